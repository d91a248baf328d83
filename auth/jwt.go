package auth

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
)

// Algorithms accepted in a JWT's header; anything else (none, HS256 with
// a public key as secret) is refused before any key is tried.
var algorithms = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

const (
	maxJWTBytes = 16 << 10
	maxKeys     = 100
)

// keySet is a parsed JWKS file: public signing keys only.
type keySet struct {
	keys []jose.JSONWebKey
}

// ParseJWKS reads a JWKS file ({"keys": [...]}) of public keys for RS256,
// ES256 or EdDSA signatures.
func ParseJWKS(b []byte) (*keySet, error) {
	if len(b) > maxFileBytes {
		return nil, fmt.Errorf("the JWKS file is %d bytes; at most %d", len(b), maxFileBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		return nil, fmt.Errorf("the JWKS file is not a JSON Web Key Set: %w", err)
	}
	if len(set.Keys) == 0 || len(set.Keys) > maxKeys {
		return nil, fmt.Errorf("the JWKS file holds %d keys; give 1 to %d", len(set.Keys), maxKeys)
	}
	ks := &keySet{}
	for i, k := range set.Keys {
		if !k.IsPublic() {
			return nil, fmt.Errorf("key %d (kid %q) is a private key: a JWKS file for verifying holds public keys only", i, k.KeyID)
		}
		if k.Use == "enc" {
			return nil, fmt.Errorf("key %d (kid %q) is for encryption (use enc), not signatures", i, k.KeyID)
		}
		if !k.Valid() {
			return nil, fmt.Errorf("key %d (kid %q) is not a valid key", i, k.KeyID)
		}
		ks.keys = append(ks.keys, k)
	}
	return ks, nil
}

// claims are the registered claims and the scope claims modelserve reads.
type claims struct {
	jwt.Claims
	Scope string          `json:"scope"`
	Scp   json.RawMessage `json:"scp"`
}

// jwtError is why a JWT was refused, with the reason counted in metrics.
type jwtError struct {
	reason, msg string
}

func (e *jwtError) Error() string { return e.msg }

// verify checks a JWT's signature against the set, then its exp and nbf
// (with skew), issuer and audience, and returns its subject and scopes.
func (ks *keySet) verify(raw string, issuer, audience string, skew time.Duration, now time.Time) (Principal, error) {
	if len(raw) > maxJWTBytes {
		return Principal{}, &jwtError{"malformed", "the token is too long"}
	}
	tok, err := jwt.ParseSigned(raw, algorithms)
	if err != nil {
		return Principal{}, &jwtError{"malformed", "the token is not a signed JWT of RS256, ES256 or EdDSA"}
	}
	if len(tok.Headers) != 1 {
		return Principal{}, &jwtError{"malformed", "the token carries more than one signature"}
	}
	kid := tok.Headers[0].KeyID
	var c claims
	verified := false
	for _, k := range ks.keys {
		if kid != "" && k.KeyID != kid {
			continue
		}
		if err := tok.Claims(k.Key, &c); err == nil {
			verified = true
			break
		}
	}
	if !verified {
		return Principal{}, &jwtError{"bad_signature", "the token's signature does not verify with any key of the JWKS file"}
	}
	if c.Expiry == nil {
		return Principal{}, &jwtError{"malformed", "the token has no exp claim"}
	}
	exp := jwt.Expected{Issuer: issuer, Time: now}
	if audience != "" {
		exp.AnyAudience = jwt.Audience{audience}
	}
	if err := c.ValidateWithLeeway(exp, skew); err != nil {
		switch {
		case errors.Is(err, jwt.ErrExpired):
			return Principal{}, &jwtError{"expired", "the token has expired"}
		case errors.Is(err, jwt.ErrNotValidYet), errors.Is(err, jwt.ErrIssuedInTheFuture):
			return Principal{}, &jwtError{"not_yet_valid", "the token is not valid yet"}
		case errors.Is(err, jwt.ErrInvalidIssuer):
			return Principal{}, &jwtError{"wrong_issuer", "the token's issuer is not the one this server trusts"}
		case errors.Is(err, jwt.ErrInvalidAudience):
			return Principal{}, &jwtError{"wrong_audience", "the token is not meant for this server (audience)"}
		}
		return Principal{}, &jwtError{"invalid_claims", "the token's claims are invalid"}
	}
	if checkPrincipalName(c.Subject) != nil {
		return Principal{}, &jwtError{"invalid_claims", "the token's subject (sub) is missing or not a plain name"}
	}
	scopes, err := jwtScopes(c)
	if err != nil {
		return Principal{}, &jwtError{"invalid_claims", err.Error()}
	}
	return Principal{Name: c.Subject, Scopes: scopes}, nil
}

// jwtScopes reads scope (space-separated) or scp (a string or a list);
// scopes modelserve does not know are ignored, as other services' are.
func jwtScopes(c claims) ([]Scope, error) {
	var words []string
	switch {
	case c.Scope != "":
		words = strings.Fields(c.Scope)
	case len(c.Scp) > 0:
		var one string
		var many []string
		if json.Unmarshal(c.Scp, &one) == nil {
			words = strings.Fields(one)
		} else if json.Unmarshal(c.Scp, &many) == nil {
			words = many
		} else {
			return nil, fmt.Errorf("the token's scp claim is neither a string nor a list of strings")
		}
	}
	var out []Scope
	for _, w := range words {
		if s, err := parseScope(w); err == nil {
			out = append(out, s)
		}
	}
	return out, nil
}

func (ks *keySet) len() int {
	if ks == nil {
		return 0
	}
	return len(ks.keys)
}
