package auth

import (
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultClockSkew is how far a JWT's exp and nbf may be off the server's
// clock.
const DefaultClockSkew = 30 * time.Second

// Config says which credentials a server accepts.
type Config struct {
	// TokensFile holds bearer tokens (ParseTokens).
	TokensFile string
	// JWKSFile holds the public keys JWTs are signed with; Issuer and
	// Audience, when set, must match the token's iss and aud.
	JWKSFile, Issuer, Audience string
	ClockSkew                  time.Duration
	// ClientCertificates: TLS verifies client certificates, and every
	// request but the probes needs one; its subject (or first SAN) is the
	// principal, with CertificateScopes, unless a bearer token names
	// another.
	ClientCertificates bool
	CertificateScopes  []Scope
	// TrustedProxies may name the caller in sf-context-current-user (or
	// X-Forwarded-User); such a caller gets ProxyScopes. From any other
	// address those headers are ignored.
	TrustedProxies []netip.Prefix
	ProxyScopes    []Scope
	Log            *slog.Logger
}

// Credentials are what a request brings to be authenticated.
type Credentials struct {
	// Authorization is the header's value.
	Authorization string
	// Remote is the address the connection comes from.
	Remote netip.Addr
	// Certificate is the client's verified leaf certificate, if any.
	Certificate *x509.Certificate
	// ForwardedUser is sf-context-current-user, else X-Forwarded-User.
	ForwardedUser string
}

// Failure is a refused request: 401 (no or bad credentials) or 403 (a
// principal without the scope), with the WWW-Authenticate challenge.
type Failure struct {
	Status    int
	Reason    string // counted in modelserve_auth_failures_total
	Message   string
	Challenge string
}

func (f *Failure) Error() string { return f.Message }

// Policy authenticates and authorizes requests. Its files are read at New
// and again by Reload; a file that fails to parse leaves the set before it
// in force.
type Policy struct {
	cfg      Config
	tokens   atomic.Pointer[tokenSet]
	keys     atomic.Pointer[keySet]
	failures *prometheus.CounterVec
	reloads  *prometheus.CounterVec
	now      func() time.Time
}

// New reads the configured files; at start, a file that cannot be read or
// parsed is an error.
func New(cfg Config, reg prometheus.Registerer) (*Policy, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.ClockSkew <= 0 {
		cfg.ClockSkew = DefaultClockSkew
	}
	if cfg.JWKSFile == "" && (cfg.Issuer != "" || cfg.Audience != "") {
		return nil, errors.New("--auth-issuer and --auth-audience need --auth-jwks")
	}
	p := &Policy{cfg: cfg, now: time.Now,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelserve_auth_failures_total",
			Help: "Requests refused by authentication (401) or authorization (403), by reason.",
		}, []string{"reason"}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelserve_auth_reloads_total",
			Help: "Credential files read again after a change, by file and result (ok, or failed: the previous set stays).",
		}, []string{"file", "result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{p.failures, p.reloads} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("registering auth metrics: %w", err)
			}
		}
	}
	if err := p.load(); err != nil {
		return nil, err
	}
	return p, nil
}

// Enabled reports whether any credential is configured; without one,
// every request is let in as anonymous.
func (p *Policy) Enabled() bool {
	return p != nil && (p.cfg.TokensFile != "" || p.cfg.JWKSFile != "" || p.cfg.ClientCertificates || len(p.cfg.TrustedProxies) > 0)
}

// Files are the credential files Reload reads.
func (p *Policy) Files() []string {
	var fs []string
	for _, f := range []string{p.cfg.TokensFile, p.cfg.JWKSFile} {
		if f != "" {
			fs = append(fs, f)
		}
	}
	return fs
}

func (p *Policy) load() error {
	var errs []error
	if f := p.cfg.TokensFile; f != "" {
		set, err := readParsed(f, ParseTokens)
		if err == nil {
			p.tokens.Store(set)
		}
		errs = append(errs, p.counted("tokens", err))
	}
	if f := p.cfg.JWKSFile; f != "" {
		set, err := readParsed(f, ParseJWKS)
		if err == nil {
			p.keys.Store(set)
		}
		errs = append(errs, p.counted("jwks", err))
	}
	return errors.Join(errs...)
}

func (p *Policy) counted(file string, err error) error {
	result := "ok"
	if err != nil {
		result = "failed"
	}
	p.reloads.WithLabelValues(file, result).Inc()
	return err
}

// Reload reads the files again. A file that fails keeps its previous set
// in force; the error says which and why.
func (p *Policy) Reload() error {
	err := p.load()
	if err == nil {
		p.cfg.Log.Info("credentials reloaded", "tokens", p.tokens.Load().len(), "jwks_keys", p.keys.Load().len())
	}
	return err
}

// readParsed reads at most one byte past the limit (so parse can refuse
// an oversized file) and parses it.
func readParsed[T any](path string, parse func([]byte) (T, error)) (T, error) {
	var zero T
	f, err := os.Open(path)
	if err != nil {
		return zero, err
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxFileBytes+1))
	if err != nil {
		return zero, fmt.Errorf("reading %s: %w", path, err)
	}
	v, err := parse(b)
	if err != nil {
		return zero, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// Check authenticates the request and authorizes it for need; a refusal
// is counted and worded for the caller.
func (p *Policy) Check(cr Credentials, need Need) (Principal, *Failure) {
	pr, f := p.Authenticate(cr)
	if f == nil && !pr.Allows(need) {
		f = &Failure{Status: 403, Reason: "insufficient_scope",
			Message:   fmt.Sprintf("%s may not do this: it needs the scope %s", pr.Name, need),
			Challenge: fmt.Sprintf(`Bearer realm="modelserve", error="insufficient_scope", scope=%q`, need.String())}
	}
	if f != nil {
		p.failures.WithLabelValues(f.Reason).Inc()
	}
	return pr, f
}

// Authenticate establishes who the request comes from: a bearer token
// (from the tokens file, else a JWT), else the client certificate, else
// the user a trusted proxy names. With no auth configured every request
// is anonymous and allowed.
func (p *Policy) Authenticate(cr Credentials) (Principal, *Failure) {
	if cr.ForwardedUser != "" && !p.trusted(cr.Remote) {
		p.cfg.Log.Debug("ignored a caller identity header from an untrusted address", "remote", cr.Remote.String())
		cr.ForwardedUser = ""
	}
	if !p.Enabled() {
		if cr.ForwardedUser != "" && checkPrincipalName(cr.ForwardedUser) == nil {
			return Principal{Name: cr.ForwardedUser, all: true}, nil
		}
		return anonymous, nil
	}
	if p.cfg.ClientCertificates && cr.Certificate == nil {
		return Principal{}, unauthorized("no_client_certificate", "this server needs a client certificate signed by its client CA (mutual TLS)", "")
	}
	if cr.Authorization != "" {
		return p.bearer(cr.Authorization)
	}
	if cr.Certificate != nil && p.cfg.ClientCertificates {
		return Principal{Name: certificateName(cr.Certificate), Scopes: p.cfg.CertificateScopes}, nil
	}
	if cr.ForwardedUser != "" {
		if checkPrincipalName(cr.ForwardedUser) != nil {
			return Principal{}, unauthorized("invalid_identity", "the proxy's caller identity is not a plain name", "")
		}
		return Principal{Name: cr.ForwardedUser, Scopes: p.cfg.ProxyScopes}, nil
	}
	return Principal{}, unauthorized("missing", "this server needs a credential: send Authorization: Bearer <token>", "")
}

func (p *Policy) bearer(header string) (Principal, *Failure) {
	scheme, tok, ok := strings.Cut(strings.TrimSpace(header), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return Principal{}, unauthorized("bad_scheme", "the Authorization header must read Bearer <token>", "invalid_request")
	}
	tok = strings.TrimSpace(tok)
	if t := p.tokens.Load().lookup(tok); t != nil {
		return Principal{Name: t.name, Scopes: t.scopes}, nil
	}
	keys := p.keys.Load()
	if keys == nil || strings.Count(tok, ".") != 2 {
		return Principal{}, unauthorized("invalid_token", "the token is not valid here", "invalid_token")
	}
	pr, err := keys.verify(tok, p.cfg.Issuer, p.cfg.Audience, p.cfg.ClockSkew, p.now())
	if err != nil {
		var je *jwtError
		if errors.As(err, &je) {
			return Principal{}, unauthorized(je.reason, je.msg, "invalid_token")
		}
		return Principal{}, unauthorized("invalid_token", err.Error(), "invalid_token")
	}
	return pr, nil
}

func unauthorized(reason, msg, code string) *Failure {
	ch := `Bearer realm="modelserve"`
	if code != "" {
		ch += fmt.Sprintf(`, error=%q`, code)
	}
	return &Failure{Status: 401, Reason: reason, Message: msg, Challenge: ch}
}

func (p *Policy) trusted(a netip.Addr) bool {
	a = a.Unmap()
	for _, pfx := range p.cfg.TrustedProxies {
		if pfx.Contains(a) {
			return true
		}
	}
	return false
}

// certificateName is the principal a client certificate stands for: its
// subject's common name, else its first SAN, else its fingerprint.
func certificateName(c *x509.Certificate) string {
	candidates := []string{c.Subject.CommonName}
	candidates = append(candidates, c.DNSNames...)
	candidates = append(candidates, c.EmailAddresses...)
	for _, u := range c.URIs {
		candidates = append(candidates, u.String())
	}
	for _, n := range candidates {
		if checkPrincipalName(n) == nil {
			return n
		}
	}
	sum := sha256.Sum256(c.Raw)
	return "certificate-" + hex.EncodeToString(sum[:8])
}

// ParseProxies reads a comma list of addresses and CIDR ranges.
func ParseProxies(list string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		if pfx, err := netip.ParsePrefix(f); err == nil {
			out = append(out, pfx.Masked())
			continue
		}
		a, err := netip.ParseAddr(f)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: give an address or a CIDR range (10.0.0.0/8)", f)
		}
		out = append(out, netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	}
	return out, nil
}

// HTTPCredentials gathers a net/http request's credentials.
func HTTPCredentials(r *http.Request) Credentials {
	cr := Credentials{Authorization: r.Header.Get("Authorization"), ForwardedUser: r.Header.Get("sf-context-current-user")}
	if cr.ForwardedUser == "" {
		cr.ForwardedUser = r.Header.Get("X-Forwarded-User")
	}
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		cr.Remote = ap.Addr().Unmap()
	}
	if r.TLS != nil && len(r.TLS.VerifiedChains) > 0 && len(r.TLS.VerifiedChains[0]) > 0 {
		cr.Certificate = r.TLS.VerifiedChains[0][0]
	}
	return cr
}
