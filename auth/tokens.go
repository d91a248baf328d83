package auth

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"strings"
)

// Limits on a tokens file: it is read again whenever it changes, so a
// huge or hostile one must not take the server's memory or time.
const (
	maxFileBytes  = 1 << 20
	maxLineBytes  = 4096
	maxTokens     = 10000
	minTokenChars = 16
	maxNameChars  = 128
)

// token is one entry of a tokens file: the token is kept only as its
// SHA-256 digest.
type token struct {
	name   string
	scopes []Scope
	digest [sha256.Size]byte
}

// tokenSet is a parsed tokens file, looked up by digest.
type tokenSet struct {
	byDigest map[[sha256.Size]byte]*token
}

// ParseTokens reads a tokens file: one entry per line, NAME SCOPES TOKEN,
// where SCOPES is a comma list (predict, predict:MODEL_OR_FUNCTION,
// metrics, admin) and TOKEN the token itself (16 characters or more) or
// sha256:HEX of it. A # at the start of a line or after a space starts a
// comment. Any error refuses the whole file, naming the line.
func ParseTokens(b []byte) (*tokenSet, error) {
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("the tokens file is %d bytes; at most %d", len(b), maxFileBytes)
	}
	set := &tokenSet{byDigest: map[[sha256.Size]byte]*token{}}
	names := map[string]int{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 1024), maxLineBytes)
	for n := 1; sc.Scan(); n++ {
		line := stripComment(sc.Text())
		fields := strings.Fields(line)
		if len(fields) == 0 {
			continue
		}
		if len(fields) != 3 {
			return nil, fmt.Errorf("line %d: want NAME SCOPES TOKEN, got %d fields", n, len(fields))
		}
		t, err := parseEntry(fields[0], fields[1], fields[2])
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n, err)
		}
		if _, dup := set.byDigest[t.digest]; dup {
			return nil, fmt.Errorf("line %d: the token of %q is also another entry's; give each its own", n, t.name)
		}
		if first, dup := names[t.name]; dup {
			return nil, fmt.Errorf("line %d: the name %q is also on line %d; names identify callers in logs, give each its own", n, t.name, first)
		}
		names[t.name] = n
		if len(set.byDigest) == maxTokens {
			return nil, fmt.Errorf("line %d: more than %d tokens", n, maxTokens)
		}
		set.byDigest[t.digest] = t
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading the tokens file: %w (lines are at most %d bytes)", err, maxLineBytes)
	}
	return set, nil
}

func stripComment(line string) string {
	for i := 0; i < len(line); i++ {
		if line[i] == '#' && (i == 0 || line[i-1] == ' ' || line[i-1] == '\t') {
			return line[:i]
		}
	}
	return line
}

func parseEntry(name, scopes, tok string) (*token, error) {
	if err := checkPrincipalName(name); err != nil {
		return nil, err
	}
	ss, err := ParseScopes(scopes)
	if err != nil {
		return nil, err
	}
	t := &token{name: name, scopes: ss}
	if h, ok := strings.CutPrefix(tok, "sha256:"); ok {
		d, err := hex.DecodeString(h)
		if err != nil || len(d) != sha256.Size {
			return nil, fmt.Errorf("%s's token: sha256: must be followed by 64 hex digits", name)
		}
		copy(t.digest[:], d)
		return t, nil
	}
	if len(tok) < minTokenChars {
		return nil, fmt.Errorf("%s's token has %d characters; give at least %d (e.g. openssl rand -hex 32)", name, len(tok), minTokenChars)
	}
	for i := 0; i < len(tok); i++ {
		if tok[i] <= ' ' || tok[i] > '~' {
			return nil, fmt.Errorf("%s's token: only printable ASCII characters, no spaces", name)
		}
	}
	t.digest = sha256.Sum256([]byte(tok))
	return t, nil
}

// checkPrincipalName: names go into logs and audit lines, so they are
// short and plain.
func checkPrincipalName(name string) error {
	if name == "" || len(name) > maxNameChars {
		return fmt.Errorf("name %q: give 1 to %d characters", name, maxNameChars)
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-' || c == '@') {
			return fmt.Errorf("name %q: use letters, digits, '.', '_', '-' and '@'", name)
		}
	}
	return nil
}

// lookup finds the entry whose token is presented. The presented token is
// hashed and compared as a digest, in constant time, so the time taken
// says nothing about how much of a token matched.
func (s *tokenSet) lookup(presented string) *token {
	if s == nil {
		return nil
	}
	d := sha256.Sum256([]byte(presented))
	t := s.byDigest[d]
	if t == nil || subtle.ConstantTimeCompare(t.digest[:], d[:]) != 1 {
		return nil
	}
	return t
}

func (s *tokenSet) len() int {
	if s == nil {
		return 0
	}
	return len(s.byDigest)
}
