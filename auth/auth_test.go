package auth

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

const tokenA = "a-token-of-thirty-two-characters"

func TestParseTokens(t *testing.T) {
	hashed := sha256.Sum256([]byte("another-long-enough-token"))
	tests := []struct {
		name, file string
		wantErr    string
		wantLen    int
	}{
		{"entries and comments", "# who may call\nsql-gateway predict " + tokenA + "\n\n  grafana metrics sha256:" +
			hex.EncodeToString(hashed[:]) + "  # hashed\nops admin,metrics,predict:iris tok#en-with-a-hash-inside\n", "", 3},
		{"empty", "# nobody\n", "", 0},
		{"two fields", "a predict\n", "line 1: want NAME SCOPES TOKEN", 0},
		{"short token", "a predict short\n", "at least 16", 0},
		{"unknown scope", "a write " + tokenA, `unknown scope "write"`, 0},
		{"metrics with a target", "a metrics:x " + tokenA, "only predict takes a target", 0},
		{"bad target", "a predict:../x " + tokenA, `scope "predict:../x"`, 0},
		{"bad hash", "a predict sha256:abcd", "64 hex digits", 0},
		{"bad name", "a/b predict " + tokenA, `name "a/b"`, 0},
		{"same token twice", "a predict " + tokenA + "\nb predict " + tokenA, "line 2: the token of \"b\" is also", 0},
		{"same name twice", "a predict " + tokenA + "\na predict " + tokenA + "x", `line 2: the name "a" is also on line 1`, 0},
		{"control character", "a predict " + tokenA + "\x01", "printable ASCII", 0},
		{"a line too long", "a predict " + strings.Repeat("x", maxLineBytes), "at most 4096 bytes", 0},
		{"too big", strings.Repeat("#\n", maxFileBytes/2+1), "at most 1048576", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			set, err := ParseTokens([]byte(tt.file))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error with %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || set.len() != tt.wantLen {
				t.Fatalf("got %v, %d tokens; want %d", err, set.len(), tt.wantLen)
			}
		})
	}
	set, _ := ParseTokens([]byte("a predict " + tokenA + "\nb metrics sha256:" + hex.EncodeToString(hashed[:])))
	if tk := set.lookup(tokenA); tk == nil || tk.name != "a" {
		t.Errorf("lookup of a's token: %v", tk)
	}
	if tk := set.lookup("another-long-enough-token"); tk == nil || tk.name != "b" {
		t.Errorf("lookup of b's hashed token: %v", tk)
	}
	if tk := set.lookup(tokenA[:len(tokenA)-1]); tk != nil {
		t.Errorf("a prefix of a token matched %v", tk)
	}
}

func FuzzParseTokens(f *testing.F) {
	f.Add([]byte("a predict " + tokenA + "\n# c\nb metrics,predict:iris sha256:" + strings.Repeat("ab", 32)))
	f.Add([]byte("x admin y\n\n\t#"))
	f.Fuzz(func(t *testing.T, b []byte) {
		set, err := ParseTokens(b)
		if err != nil {
			return
		}
		for _, tk := range set.byDigest {
			if checkPrincipalName(tk.name) != nil || len(tk.scopes) == 0 {
				t.Fatalf("accepted a bad entry %+v", tk)
			}
		}
	})
}

// signer makes JWTs with one key of each algorithm the server accepts.
type signer struct {
	jwks []byte
	keys map[jose.SignatureAlgorithm]crypto.Signer
}

func newSigner(t testing.TB) *signer {
	t.Helper()
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	ecKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	_, edKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	s := &signer{keys: map[jose.SignatureAlgorithm]crypto.Signer{jose.RS256: rsaKey, jose.ES256: ecKey, jose.EdDSA: edKey}}
	var set jose.JSONWebKeySet
	for alg, k := range s.keys {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.Public(), KeyID: string(alg), Algorithm: string(alg), Use: "sig"})
	}
	if s.jwks, err = json.Marshal(set); err != nil {
		t.Fatal(err)
	}
	return s
}

func (s *signer) sign(t *testing.T, alg jose.SignatureAlgorithm, c any) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: alg, Key: s.keys[alg]}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", string(alg)))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := jwt.Signed(sg).Claims(c).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type testClaims struct {
	jwt.Claims
	Scope string   `json:"scope,omitempty"`
	Scp   []string `json:"scp,omitempty"`
}

func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestPolicy_check(t *testing.T) {
	dir := t.TempDir()
	s := newSigner(t)
	other := newSigner(t)
	p, err := New(Config{
		TokensFile: writeFile(t, dir, "tokens", "gw predict "+tokenA+"\nprom metrics prometheus-scrape-token-1\niris-only predict:iris iris-only-token-00000\n"),
		JWKSFile:   writeFile(t, dir, "jwks.json", string(s.jwks)),
		Issuer:     "https://issuer.example", Audience: "modelserve",
		TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}, ProxyScopes: []Scope{{Name: ScopePredict}},
		Log: slog.New(slog.DiscardHandler),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	good := func(scope string) testClaims {
		return testClaims{Claims: jwt.Claims{Subject: "alice", Issuer: "https://issuer.example", Audience: jwt.Audience{"modelserve"},
			Expiry: jwt.NewNumericDate(now.Add(time.Hour)), NotBefore: jwt.NewNumericDate(now.Add(-time.Minute))}, Scope: scope}
	}
	expired := good("predict")
	expired.Expiry = jwt.NewNumericDate(now.Add(-time.Hour))
	early := good("predict")
	early.NotBefore = jwt.NewNumericDate(now.Add(time.Hour))
	wrongAud := good("predict")
	wrongAud.Audience = jwt.Audience{"someone-else"}
	wrongIss := good("predict")
	wrongIss.Issuer = "https://evil.example"
	noExp := good("predict")
	noExp.Expiry = nil
	scp := good("")
	scp.Scp = []string{"metrics", "unknown:thing"}
	predict := Need{Scope: ScopePredict, Model: "iris", Function: "predict"}
	metrics := Need{Scope: ScopeMetrics}
	tests := []struct {
		name       string
		cr         Credentials
		need       Need
		wantStatus int
		wantReason string
		wantName   string
	}{
		{"no credential", Credentials{}, predict, 401, "missing", ""},
		{"a token", Credentials{Authorization: "Bearer " + tokenA}, predict, 0, "", "gw"},
		{"the scheme in any case", Credentials{Authorization: "bearer " + tokenA}, predict, 0, "", "gw"},
		{"wrong token", Credentials{Authorization: "Bearer " + tokenA + "x"}, predict, 401, "invalid_token", ""},
		{"basic auth", Credentials{Authorization: "Basic Z3c6eA=="}, predict, 401, "bad_scheme", ""},
		{"a token without the scope", Credentials{Authorization: "Bearer prometheus-scrape-token-1"}, predict, 403, "insufficient_scope", "prom"},
		{"metrics scope", Credentials{Authorization: "Bearer prometheus-scrape-token-1"}, metrics, 0, "", "prom"},
		{"model-restricted token, its model", Credentials{Authorization: "Bearer iris-only-token-00000"}, predict, 0, "", "iris-only"},
		{"model-restricted token, another model", Credentials{Authorization: "Bearer iris-only-token-00000"},
			Need{Scope: ScopePredict, Model: "dlrm", Function: "predict"}, 403, "insufficient_scope", "iris-only"},
		{"RS256", Credentials{Authorization: "Bearer " + s.sign(t, jose.RS256, good("predict"))}, predict, 0, "", "alice"},
		{"ES256", Credentials{Authorization: "Bearer " + s.sign(t, jose.ES256, good("predict metrics"))}, metrics, 0, "", "alice"},
		{"EdDSA", Credentials{Authorization: "Bearer " + s.sign(t, jose.EdDSA, good("predict:iris"))}, predict, 0, "", "alice"},
		{"scp list", Credentials{Authorization: "Bearer " + s.sign(t, jose.ES256, scp)}, metrics, 0, "", "alice"},
		{"JWT without the scope", Credentials{Authorization: "Bearer " + s.sign(t, jose.RS256, good("metrics"))}, predict, 403, "insufficient_scope", "alice"},
		{"expired", Credentials{Authorization: "Bearer " + s.sign(t, jose.RS256, expired)}, predict, 401, "expired", ""},
		{"not yet valid", Credentials{Authorization: "Bearer " + s.sign(t, jose.RS256, early)}, predict, 401, "not_yet_valid", ""},
		{"wrong audience", Credentials{Authorization: "Bearer " + s.sign(t, jose.RS256, wrongAud)}, predict, 401, "wrong_audience", ""},
		{"wrong issuer", Credentials{Authorization: "Bearer " + s.sign(t, jose.RS256, wrongIss)}, predict, 401, "wrong_issuer", ""},
		{"no exp", Credentials{Authorization: "Bearer " + s.sign(t, jose.RS256, noExp)}, predict, 401, "malformed", ""},
		{"signed by another key", Credentials{Authorization: "Bearer " + other.sign(t, jose.RS256, good("predict"))}, predict, 401, "bad_signature", ""},
		{"alg none", Credentials{Authorization: "Bearer eyJhbGciOiJub25lIiwidHlwIjoiSldUIn0.eyJzdWIiOiJtYWxsb3J5In0."}, predict, 401, "malformed", ""},
		{"a trusted proxy's user", Credentials{Remote: netip.MustParseAddr("10.1.2.3"), ForwardedUser: "JDOE"}, predict, 0, "", "JDOE"},
		{"an untrusted address's user header", Credentials{Remote: netip.MustParseAddr("192.0.2.1"), ForwardedUser: "JDOE"}, predict, 401, "missing", ""},
		{"health needs nothing", Credentials{Authorization: "Bearer prometheus-scrape-token-1"}, Need{}, 0, "", "prom"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			pr, f := p.Check(tt.cr, tt.need)
			switch {
			case tt.wantStatus == 0 && f != nil:
				t.Fatalf("refused: %d %s: %s", f.Status, f.Reason, f.Message)
			case tt.wantStatus != 0 && (f == nil || f.Status != tt.wantStatus || f.Reason != tt.wantReason):
				t.Fatalf("got %+v, want %d %s", f, tt.wantStatus, tt.wantReason)
			case tt.wantStatus == 401 && !strings.HasPrefix(f.Challenge, `Bearer realm="modelserve"`):
				t.Fatalf("challenge %q", f.Challenge)
			}
			if tt.wantName != "" && pr.Name != tt.wantName {
				t.Fatalf("principal %q, want %q", pr.Name, tt.wantName)
			}
		})
	}
}

func TestPolicy_offLetsEveryoneInAndTrustsOnlyItsProxies(t *testing.T) {
	p, err := New(Config{TrustedProxies: nil, Log: slog.New(slog.DiscardHandler)}, nil)
	if err != nil || p.Enabled() {
		t.Fatalf("%v, enabled %v", err, p.Enabled())
	}
	pr, f := p.Check(Credentials{Remote: netip.MustParseAddr("192.0.2.1"), ForwardedUser: "JDOE"}, Need{Scope: ScopeAdmin})
	if f != nil || pr.Name != "anonymous" {
		t.Fatalf("got %+v %v", pr, f)
	}
}

// TestPolicy_reloadKeepsTheLastGoodSet: a file rewritten with a syntax
// error leaves the previous tokens in force; a good one replaces them.
func TestPolicy_reloadKeepsTheLastGoodSet(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "tokens", "a predict "+tokenA+"\n")
	p, err := New(Config{TokensFile: path, Log: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	allowed := func(tok string) bool {
		_, f := p.Check(Credentials{Authorization: "Bearer " + tok}, Need{Scope: ScopePredict})
		return f == nil
	}
	writeFile(t, dir, "tokens", "a predict\n")
	if err := p.Reload(); err == nil || !strings.Contains(err.Error(), "line 1") {
		t.Fatalf("reloading a broken file: %v", err)
	}
	if !allowed(tokenA) {
		t.Fatal("a broken file took the previous tokens away")
	}
	writeFile(t, dir, "tokens", "b predict b-token-of-sixteen-plus\n")
	if err := p.Reload(); err != nil {
		t.Fatal(err)
	}
	if allowed(tokenA) || !allowed("b-token-of-sixteen-plus") {
		t.Fatal("the new file is not in force")
	}
}

// TestWatch_reloadsWhenAFileChanges, including by a rename over it.
func TestWatch_reloadsWhenAFileChanges(t *testing.T) {
	dir := t.TempDir()
	path := writeFile(t, dir, "tokens", "a predict "+tokenA+"\n")
	p, err := New(Config{TokensFile: path, Log: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go NewWatcher(p).Run(ctx, 20*time.Millisecond, slog.New(slog.DiscardHandler))
	tmp := writeFile(t, dir, "tokens.new", "b predict b-token-of-sixteen-plus\n")
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		if _, f := p.Check(Credentials{Authorization: "Bearer b-token-of-sixteen-plus"}, Need{Scope: ScopePredict}); f == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("the renamed-in file was not reloaded within 2s")
}

func TestParseProxies(t *testing.T) {
	got, err := ParseProxies("10.0.0.0/8, 192.0.2.7,::1")
	if err != nil || len(got) != 3 || got[1].Bits() != 32 || got[2].Bits() != 128 {
		t.Fatalf("got %v, %v", got, err)
	}
	if _, err := ParseProxies("10.0.0.0/8,example.com"); err == nil {
		t.Fatal("a host name was accepted")
	}
}

// FuzzCheck: whatever a caller puts in Authorization, the forwarded-user
// header and the scopes, the policy never panics and lets in only the
// one valid token.
func FuzzCheck(f *testing.F) {
	dir := f.TempDir()
	path := filepath.Join(dir, "tokens")
	if err := os.WriteFile(path, []byte("a predict "+tokenA+"\n"), 0o600); err != nil {
		f.Fatal(err)
	}
	s := newSigner(f)
	jwks := filepath.Join(dir, "jwks.json")
	if err := os.WriteFile(jwks, s.jwks, 0o600); err != nil {
		f.Fatal(err)
	}
	p, err := New(Config{TokensFile: path, JWKSFile: jwks, Audience: "ms", TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
		Log: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		f.Fatal(err)
	}
	f.Add("Bearer "+tokenA, "", "predict")
	f.Add("Bearer eyJhbGciOiJSUzI1NiIsImtpZCI6IlJTMjU2In0.eyJzdWIiOiJ4In0.c2ln", "JDOE", "metrics,predict:iris")
	f.Add("bearer  x.y.z ", "a b", "admin")
	f.Fuzz(func(t *testing.T, authz, user, scopes string) {
		ParseScopes(scopes)
		ParseProxies(scopes)
		pr, fail := p.Check(Credentials{Authorization: authz, ForwardedUser: user, Remote: netip.MustParseAddr("192.0.2.1")},
			Need{Scope: ScopePredict, Model: "iris"})
		if fail == nil && pr.Name != "a" {
			t.Fatalf("let in %+v with %q", pr, authz)
		}
	})
}
