package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/modelserve/modelserve/auth"
)

// securityOptions are serve's flags for who may call.
type securityOptions struct {
	tokens, jwks, issuer, audience string
	tlsCert, tlsKey, tlsClientCA   string
	certScopes                     string
	trustedProxies, proxyScopes    string
	authHealth, requireAuth        bool
}

func (o *securityOptions) flags(f *pflag.FlagSet) {
	f.StringVar(&o.tokens, "auth-tokens", "", "bearer tokens file: NAME SCOPES TOKEN a line (TOKEN may be sha256:HEX); re-read when it changes and on SIGHUP")
	f.StringVar(&o.jwks, "auth-jwks", "", "JWKS file of the public keys JWTs are signed with (RS256, ES256, EdDSA); re-read like --auth-tokens")
	f.StringVar(&o.issuer, "auth-issuer", "", "the iss a JWT must carry")
	f.StringVar(&o.audience, "auth-audience", "", "an aud a JWT must carry")
	f.StringVar(&o.tlsCert, "tls-cert", "", "serve HTTPS with this certificate (PEM); re-read when it changes")
	f.StringVar(&o.tlsKey, "tls-key", "", "the --tls-cert's private key (PEM)")
	f.StringVar(&o.tlsClientCA, "tls-client-ca", "", "require client certificates that chain to these CAs (PEM): mutual TLS")
	f.StringVar(&o.certScopes, "tls-client-scopes", auth.ScopePredict, "scopes of a caller known by its client certificate alone")
	f.StringVar(&o.trustedProxies, "trusted-proxies", "", "addresses or CIDR ranges that may name the caller in sf-context-current-user or X-Forwarded-User")
	f.StringVar(&o.proxyScopes, "proxy-scopes", auth.ScopePredict, "scopes of a caller a trusted proxy names")
	f.BoolVar(&o.authHealth, "auth-health", false, "the probes (/health, /healthcheck) need a credential too")
	f.BoolVar(&o.requireAuth, "require-auth", false, "refuse to start when no credential is configured")
}

// security is the policy and TLS a server runs with, and what keeps
// their files fresh.
type security struct {
	policy *auth.Policy
	tls    *auth.TLS // nil: plain HTTP
}

// setup reads the credential files and the certificate. With nothing
// configured it says once, at start, that anyone who reaches addr may
// call, or refuses to start with --require-auth.
func (o *securityOptions) setup(reg prometheus.Registerer, log *slog.Logger, addr string) (*security, error) {
	cfg := auth.Config{TokensFile: o.tokens, JWKSFile: o.jwks, Issuer: o.issuer, Audience: o.audience, Log: log}
	var err error
	if cfg.TrustedProxies, err = auth.ParseProxies(o.trustedProxies); err != nil {
		return nil, fmt.Errorf("--trusted-proxies: %w", err)
	}
	if cfg.ProxyScopes, err = auth.ParseScopes(o.proxyScopes); err != nil {
		return nil, fmt.Errorf("--proxy-scopes: %w", err)
	}
	if cfg.CertificateScopes, err = auth.ParseScopes(o.certScopes); err != nil {
		return nil, fmt.Errorf("--tls-client-scopes: %w", err)
	}
	sec := &security{}
	if o.tlsCert != "" || o.tlsKey != "" || o.tlsClientCA != "" {
		if sec.tls, err = auth.LoadTLS(auth.TLSFiles{Cert: o.tlsCert, Key: o.tlsKey, ClientCA: o.tlsClientCA}); err != nil {
			return nil, err
		}
		cfg.ClientCertificates = sec.tls.ClientCertificates()
	}
	if sec.policy, err = auth.New(cfg, reg); err != nil {
		return nil, err
	}
	switch {
	case sec.policy.Enabled():
		log.Info("callers authenticate", "tokens", o.tokens != "", "jwks", o.jwks != "", "client_certificates", cfg.ClientCertificates,
			"trusted_proxies", o.trustedProxies, "tls", sec.tls != nil)
	case o.requireAuth:
		return nil, fmt.Errorf("--require-auth: no credential is configured; give --auth-tokens, --auth-jwks, --tls-client-ca or --trusted-proxies")
	default:
		log.Warn("no auth is configured: anyone who reaches this address may run the model, read /metrics and poll batches (--auth-tokens, --auth-jwks, --tls-client-ca; --require-auth refuses to start like this)",
			"addr", addr)
	}
	return sec, nil
}

// tlsConfig is the listeners' TLS configuration, nil for plain HTTP.
func (s *security) tlsConfig() *tls.Config {
	if s.tls == nil {
		return nil
	}
	return s.tls.Config()
}

// keepFresh re-reads the files when they change (checked every quarter
// second) and on SIGHUP, until ctx ends.
func (s *security) keepFresh(ctx context.Context, log *slog.Logger) {
	items := []auth.Reloader{s.policy}
	if s.tls != nil {
		items = append(items, s.tls)
	}
	w := auth.NewWatcher(items...)
	go w.Run(ctx, 250*time.Millisecond, log)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	go func() {
		defer signal.Stop(hup)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
				auth.ReloadAll(log, "SIGHUP", items...)
			}
		}
	}()
}

// guardHTTP applies the policy to a net/http handler (the debug
// listener): need is the scope every request there requires.
func (s *security) guardHTTP(need auth.Need, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, f := s.policy.Check(auth.HTTPCredentials(r), need)
		if f != nil {
			w.Header().Set("WWW-Authenticate", f.Challenge)
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(f.Status)
			json.NewEncoder(w).Encode(map[string]string{"error": f.Message})
			return
		}
		next.ServeHTTP(w, r)
	})
}
