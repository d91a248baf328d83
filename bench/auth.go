package main

import (
	"cmp"
	"crypto/tls"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/modelserve/modelserve/internal/loadgen"
	"github.com/modelserve/modelserve/internal/pki"
)

// authClients is how many 1-row callers the auth section runs at once.
const authClients = 16

// authSection: what authenticating callers costs per request, 1-row
// requests on the MLP, kept-alive connections: no auth, a bearer token,
// TLS alone, and mutual TLS with a client certificate.
func authSection(e *env) (string, error) {
	dir, err := os.MkdirTemp("", "modelserve-bench-auth-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(dir)
	ca, err := pki.NewCA("bench CA")
	if err != nil {
		return "", err
	}
	server, err := ca.Issue("localhost", true)
	if err != nil {
		return "", err
	}
	client, err := ca.Issue("bench-client", false)
	if err != nil {
		return "", err
	}
	const token = "bench-token-0123456789abcdef"
	files := map[string][]byte{"cert.pem": server.CertPEM, "key.pem": server.KeyPEM, "ca.pem": ca.PEM,
		"tokens": []byte("bench predict " + token + "\n")}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o600); err != nil {
			return "", err
		}
	}
	path := func(name string) string { return filepath.Join(dir, name) }
	trust := &tls.Config{RootCAs: pki.Pool(ca)}
	mutual := &tls.Config{RootCAs: pki.Pool(ca), Certificates: []tls.Certificate{client.Pair}}
	cells := []struct {
		label  string
		args   []string
		scheme string
		tls    *tls.Config
		token  string
	}{
		{"none (HTTP, no credential)", nil, "http", nil, ""},
		{"bearer token (--auth-tokens)", []string{"--auth-tokens", path("tokens")}, "http", nil, token},
		{"TLS, no credential (--tls-cert)", []string{"--tls-cert", path("cert.pem"), "--tls-key", path("key.pem")}, "https", trust, ""},
		{"TLS and a bearer token", []string{"--tls-cert", path("cert.pem"), "--tls-key", path("key.pem"), "--auth-tokens", path("tokens")}, "https", trust, token},
		{"mutual TLS (--tls-client-ca)", []string{"--tls-cert", path("cert.pem"), "--tls-key", path("key.pem"), "--tls-client-ca", path("ca.pem")}, "https", mutual, ""},
	}
	body := body(mlp, 1, false)
	rounds := make([][]*loadgen.Stats, len(cells))
	for round := range batchRounds {
		for i, c := range cells {
			fmt.Fprintf(os.Stderr, "bench: auth round %d: %s\n", round+1, c.label)
			s, err := e.serve(mlp, c.args...)
			if err != nil {
				return "", fmt.Errorf("%s: %w", c.label, err)
			}
			tg, err := loadgen.NewTarget(c.scheme+"://"+s.host+"/predict", authClients, c.tls)
			if err != nil {
				s.stop()
				return "", err
			}
			if c.token != "" {
				tg.SetHeader("Authorization", "Bearer "+c.token)
			}
			st := tg.Closed(body, authClients, time.Second, e.o.duration, nil)
			s.stop()
			if n := st.Others() + len(st.Rejected); n > 0 || len(st.OK) == 0 {
				return "", fmt.Errorf("%s: %d answered, others %v", c.label, len(st.OK), st.Statuses)
			}
			rounds[i] = append(rounds[i], st)
		}
	}
	results := make([]*loadgen.Stats, len(cells))
	for i, rs := range rounds {
		slices.SortFunc(rs, func(a, b *loadgen.Stats) int { return cmp.Compare(a.OKPerSecond(), b.OKPerSecond()) })
		results[i] = rs[len(rs)/2]
	}
	none := results[0].OKPerSecond()
	var b strings.Builder
	fmt.Fprintf(&b, "## The cost of auth: 1-row requests\n\n")
	fmt.Fprintf(&b, "%d callers of 1-row requests on the MLP, kept-alive connections (a handshake per connection, not per request), each cell a fresh server; the cells run interleaved, %d rounds, and each shows its median round.\n\n", authClients, batchRounds)
	fmt.Fprintln(&b, "| callers authenticate by | requests/s | ÷ none | p50 | p99 |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|")
	for i, r := range results {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %s | %s |\n", cells[i].label, r.OKPerSecond(), r.OKPerSecond()/none,
			short(percentile(r.OK, 0.5)), short(percentile(r.OK, 0.99)))
	}
	tok := results[1].OKPerSecond() / none
	fmt.Fprintf(&b, "\nTarget: a bearer token within 10%% of none: %.2f×, %s.\n", tok, verdict(tok >= 0.9))
	return b.String(), nil
}
