package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/modelserve/modelserve/internal/pki"
	"github.com/modelserve/modelserve/oip"
)

// ca is a certificate authority made for one test.
type ca struct {
	t *testing.T
	*pki.CA
	pem []byte
}

func newCA(t *testing.T, name string) *ca {
	t.Helper()
	c, err := pki.NewCA(name)
	if err != nil {
		t.Fatal(err)
	}
	return &ca{t: t, CA: c, pem: c.PEM}
}

// issue signs a certificate for cn: a server's for 127.0.0.1, or a client's.
func (c *ca) issue(cn string, server bool) (certPEM, keyPEM []byte, pair tls.Certificate) {
	c.t.Helper()
	is, err := c.Issue(cn, server)
	if err != nil {
		c.t.Fatal(err)
	}
	return is.CertPEM, is.KeyPEM, is.Pair
}

func write(t *testing.T, path string, b []byte) string {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// replace writes b beside path and renames it over path, as a rotation
// (cert-manager, an editor, a deploy) does.
func replace(t *testing.T, path string, b []byte) {
	t.Helper()
	tmp := write(t, path+".new", b)
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

// httpsClient trusts the given CAs and presents the given certificate;
// new connections for every request when fresh is set.
func httpsClient(cas [][]byte, cert *tls.Certificate, fresh bool) *http.Client {
	pool := x509.NewCertPool()
	for _, p := range cas {
		pool.AppendCertsFromPEM(p)
	}
	cfg := &tls.Config{RootCAs: pool}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg, DisableKeepAlives: fresh}}
}

// call sends one request with an optional bearer token and returns the
// status, body and WWW-Authenticate header.
func call(t *testing.T, c *http.Client, method, url, token, body string, headers ...string) (int, string, string, error) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header.Set(headers[i], headers[i+1])
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header.Get("WWW-Authenticate"), nil
}

const irisBody = `{"data": [[0, 5.1, 3.5, 1.4, 0.2]]}`

// TestSecurity_tokensJWTsAndTLS: against the real process over real TLS,
// each wrong credential gets its status and a valid caller its rows.
func TestSecurity_tokensJWTsAndTLS(t *testing.T) {
	dir := t.TempDir()
	authority := newCA(t, "test CA")
	certPEM, keyPEM, _ := authority.issue("localhost", true)
	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: rsaKey.Public(), KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: rsaKey}, (&jose.SignerOptions{}).WithHeader("kid", "k1"))
	if err != nil {
		t.Fatal(err)
	}
	jwtFor := func(aud string, exp time.Duration, scope string) string {
		tok, err := jwt.Signed(signer).Claims(map[string]any{"sub": "alice", "iss": "https://idp.example", "aud": aud,
			"exp": time.Now().Add(exp).Unix(), "scope": scope}).Serialize()
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}

	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris", "--async", "always",
		"--auth-tokens", write(t, filepath.Join(dir, "tokens"), []byte(
			"gateway predict gateway-token-0123456789\n"+
				"other-gateway predict other-token-0123456789\n"+
				"prometheus metrics prometheus-token-012345\n"+
				"dlrm-only predict:dlrm dlrm-only-token-0123456\n"+
				"iris-only predict:iris iris-only-token-0123456\n"+
				"ops admin ops-admin-token-0123456789\n")),
		"--auth-jwks", write(t, filepath.Join(dir, "jwks.json"), jwks), "--auth-issuer", "https://idp.example", "--auth-audience", "modelserve",
		"--tls-cert", write(t, filepath.Join(dir, "cert.pem"), certPEM), "--tls-key", write(t, filepath.Join(dir, "key.pem"), keyPEM))
	base := strings.Replace(s.url, "http://", "https://", 1)
	client := httpsClient([][]byte{authority.pem}, nil, false)
	waitHTTPS(t, client, base)

	tests := []struct {
		name, method, path, token string
		want                      int
		wantBody                  string
	}{
		{"no token", "POST", "/predict", "", 401, "needs a credential"},
		{"wrong token", "POST", "/predict", "gateway-token-0123456780", 401, "not valid"},
		{"expired JWT", "POST", "/predict", jwtFor("modelserve", -time.Hour, "predict"), 401, "expired"},
		{"wrong audience", "POST", "/predict", jwtFor("another-service", time.Hour, "predict"), 401, "audience"},
		{"wrong scope", "POST", "/predict", "prometheus-token-012345", 403, "needs the scope predict:iris"},
		{"token for another model", "POST", "/predict-proba", "dlrm-only-token-0123456", 403, "needs the scope predict:iris"},
		{"token for this model", "POST", "/predict", "iris-only-token-0123456", 202, ""},
		{"valid JWT", "POST", "/predict", jwtFor("modelserve", time.Hour, "predict metrics"), 202, ""},
		{"metrics with its scope", "GET", "/metrics", "prometheus-token-012345", 200, "modelserve_auth_failures_total"},
		{"metrics without", "GET", "/metrics", "gateway-token-0123456789", 403, "needs the scope metrics"},
		{"probes stay open", "GET", "/healthcheck", "", 200, "ready"},
		{"the model repository needs admin", "POST", "/v2/repository/index", "gateway-token-0123456789", 403, "needs the scope admin"},
		{"the model repository with admin", "POST", "/v2/repository/index", "ops-admin-token-0123456789", 200, `"name":"iris"`},
		{"unload needs admin", "POST", "/v2/repository/models/iris/unload", "iris-only-token-0123456", 403, "needs the scope admin"},
		{"OIP infer, another model's token", "POST", "/v2/models/iris/infer", "dlrm-only-token-0123456", 403, "needs the scope predict:iris"},
		{"OIP infer, this model's token", "POST", "/v2/models/iris/infer", "iris-only-token-0123456", 400, `needs \"inputs\"`},
		{"OIP metadata needs a credential", "GET", "/v2/models/iris", "", 401, "needs a credential"},
		{"OIP probes stay open", "GET", "/v2/models/iris/ready", "", 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// --async always answers a POST with a batch id 202; one
			// without is answered at once.
			status, body, challenge, err := call(t, client, tt.method, base+tt.path, tt.token, irisBody,
				"sf-external-function-current-query-id", "q-"+strings.ReplaceAll(tt.name, " ", "-"), "sf-external-function-query-batch-id", "0")
			if err != nil {
				t.Fatal(err)
			}
			if status != tt.want || !strings.Contains(body, tt.wantBody) {
				t.Fatalf("got %d %s, want %d with %q", status, body, tt.want, tt.wantBody)
			}
			if status == 401 && !strings.HasPrefix(challenge, `Bearer realm="modelserve"`) {
				t.Errorf("401 without a Bearer challenge: %q", challenge)
			}
			if status >= 400 && !strings.HasPrefix(body, `{"error":`) {
				t.Errorf("refusal not in JSON: %s", body)
			}
		})
	}

	// A gateway batch is answered to its sender alone.
	gw := []string{"sf-external-function-current-query-id", "q-owned", "sf-external-function-query-batch-id", "7"}
	if status, body, _, _ := call(t, client, "POST", base+"/predict", "gateway-token-0123456789", irisBody, gw...); status != 202 {
		t.Fatalf("submitting: %d %s", status, body)
	}
	if status, body, _, _ := call(t, client, "GET", base+"/predict", "other-token-0123456789", "", gw...); status != 404 {
		t.Fatalf("another principal polled the batch: %d %s", status, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		status, body, _, _ := call(t, client, "GET", base+"/predict", "gateway-token-0123456789", "", gw...)
		if status == 200 && strings.Contains(body, `"label"`) {
			break
		}
		if status != 202 || time.Now().After(deadline) {
			t.Fatalf("its sender polling: %d %s", status, body)
		}
		time.Sleep(20 * time.Millisecond)
	}

	// Plain HTTP to the TLS port gets nothing: no credential crosses in clear.
	if status, _, _, err := call(t, http.DefaultClient, "POST", s.url+"/predict", "gateway-token-0123456789", irisBody); err == nil && status == 200 {
		t.Error("plain HTTP was answered on the TLS port")
	}
	for _, want := range []string{`msg=refused status=401 reason=expired`, `msg=batch query_id=q-owned batch_id=7 principal=gateway model=iris version=1 function=predict`} {
		waitLog(t, s, want)
	}
	if strings.Contains(s.logs.String(), "gateway-token-0123456789") {
		t.Error("a token was written to the log")
	}
}

// TestSecurity_mutualTLS: with a client CA, a client with a certificate
// from another CA fails its handshake, one without a certificate gets
// 401 (the probes alone answer it), and one with a certificate from the
// CA gets its rows, and the log names it.
func TestSecurity_mutualTLS(t *testing.T) {
	dir := t.TempDir()
	authority := newCA(t, "test CA")
	stranger := newCA(t, "another CA")
	certPEM, keyPEM, _ := authority.issue("localhost", true)
	_, _, clientCert := authority.issue("analytics-job", false)
	_, _, strangerCert := stranger.issue("analytics-job", false)
	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris", "--tls-cert", write(t, filepath.Join(dir, "cert.pem"), certPEM),
		"--tls-key", write(t, filepath.Join(dir, "key.pem"), keyPEM), "--tls-client-ca", write(t, filepath.Join(dir, "ca.pem"), authority.pem),
		"--grpc-port", "0")
	base := strings.Replace(s.url, "http://", "https://", 1)
	good := httpsClient([][]byte{authority.pem}, &clientCert, false)
	waitHTTPS(t, good, base)

	// gRPC on its own port: the same TLS, the same client certificates.
	waitLog(t, s, "listening for gRPC")
	grpcAddr := grpcAddrRE.FindStringSubmatch(s.logs.String())[1]
	infer := &oip.ModelInferRequest{ModelName: "iris", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &oip.InferTensorContents{Fp32Contents: []float32{5.1, 3.5, 1.4, 0.2}}}}}
	for _, tt := range []struct {
		name string
		cert *tls.Certificate
		code codes.Code
	}{{"the CA's client certificate", &clientCert, codes.OK}, {"no client certificate", nil, codes.Unauthenticated}} {
		pool := x509.NewCertPool()
		pool.AppendCertsFromPEM(authority.pem)
		cfg := &tls.Config{RootCAs: pool, ServerName: "localhost"}
		if tt.cert != nil {
			cfg.Certificates = []tls.Certificate{*tt.cert}
		}
		conn, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = oip.NewGRPCInferenceServiceClient(conn).ModelInfer(ctx, infer)
		cancel()
		conn.Close()
		if status.Code(err) != tt.code {
			t.Errorf("gRPC over TLS with %s = %v, want %v", tt.name, err, tt.code)
		}
	}
	plain, err := grpc.NewClient(grpcAddr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	if _, err := oip.NewGRPCInferenceServiceClient(plain).ModelInfer(ctx, infer); status.Code(err) != codes.Unavailable {
		t.Errorf("plain gRPC on the TLS port = %v, want a refused connection", err)
	}
	cancel()
	plain.Close()
	if status, body, _, err := call(t, good, "POST", base+"/predict", "", irisBody); err != nil || status != 200 || !strings.Contains(body, `"label":0`) {
		t.Fatalf("with a client certificate: %v %d %s", err, status, body)
	}
	// Go's client offers only a certificate the server's CA list names:
	// forced, another CA's certificate fails the handshake.
	forced := httpsClient([][]byte{authority.pem}, nil, true)
	forced.Transport.(*http.Transport).TLSClientConfig.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
		return &strangerCert, nil
	}
	if status, body, _, err := call(t, forced, "POST", base+"/predict", "", irisBody); err == nil {
		t.Errorf("a certificate of another CA: answered %d %s, want a failed handshake", status, body)
	}
	none := httpsClient([][]byte{authority.pem}, nil, true)
	if status, body, _, err := call(t, none, "POST", base+"/predict", "", irisBody); err != nil || status != 401 || !strings.Contains(body, "needs a client certificate") {
		t.Errorf("no client certificate: %v %d %s, want 401", err, status, body)
	}
	if status, _, _, err := call(t, none, "GET", base+"/healthcheck", "", ""); err != nil || status != 200 {
		t.Errorf("the probe without a client certificate: %v %d", err, status)
	}
	waitLog(t, s, "principal=analytics-job model=iris version=1 function=predict rows=1 status=200")
}

// TestSecurity_rotationUnderLoad: while a steady stream calls with token
// A, the file is rewritten to add B and remove C: A never fails, B works
// and C is refused within a second. Then the certificate is swapped for
// one of another CA: clients that trust both never fail a handshake, and
// the new certificate is served within a second.
func TestSecurity_rotationUnderLoad(t *testing.T) {
	dir := t.TempDir()
	oldCA, newCA2 := newCA(t, "old CA"), newCA(t, "new CA")
	certPEM, keyPEM, _ := oldCA.issue("localhost", true)
	certPath, keyPath := write(t, filepath.Join(dir, "cert.pem"), certPEM), write(t, filepath.Join(dir, "key.pem"), keyPEM)
	tokens := filepath.Join(dir, "tokens")
	write(t, tokens, []byte("a predict token-a-0123456789abcdef\nc predict token-c-0123456789abcdef\n"))
	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris", "--auth-tokens", tokens, "--tls-cert", certPath, "--tls-key", keyPath)
	base := strings.Replace(s.url, "http://", "https://", 1)
	// New connections for every request, so every request is a handshake.
	both := httpsClient([][]byte{oldCA.pem, newCA2.pem}, nil, true)
	waitHTTPS(t, both, base)

	stop := steadyLoad(4, func() error {
		if status, body, _, err := call(t, both, "POST", base+"/predict", "token-a-0123456789abcdef", irisBody); err != nil || status != 200 {
			return fmt.Errorf("%d %s %v", status, body, err)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	replace(t, tokens, []byte("a predict token-a-0123456789abcdef\nb predict token-b-0123456789abcdef\n"))
	changed := time.Now()
	within := func(what string, ok func() bool) {
		for !ok() {
			if time.Since(changed) > time.Second {
				t.Errorf("%s: not within a second", what)
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	within("B works", func() bool {
		status, _, _, _ := call(t, both, "POST", base+"/predict", "token-b-0123456789abcdef", irisBody)
		return status == 200
	})
	within("C is refused", func() bool {
		status, _, _, _ := call(t, both, "POST", base+"/predict", "token-c-0123456789abcdef", irisBody)
		return status == 401
	})

	newCert, newKey, _ := newCA2.issue("localhost", true)
	// The key first, then the certificate: the pair is read once both changed.
	replace(t, keyPath, newKey)
	replace(t, certPath, newCert)
	changed = time.Now()
	onlyNew := httpsClient([][]byte{newCA2.pem}, nil, true)
	within("the new certificate is served", func() bool {
		_, _, _, err := call(t, onlyNew, "GET", base+"/healthcheck", "", "")
		return err == nil
	})
	time.Sleep(300 * time.Millisecond)
	r := stop()
	if r.failed > 0 {
		t.Errorf("%d of %d requests with token A failed during the rotations; the first: %v", r.failed, r.sent, r.first)
	}
	t.Logf("%d requests with token A during the rotations, %d failed", r.sent, r.failed)
}

// waitHTTPS waits for the readiness probe over TLS.
func waitHTTPS(t *testing.T, c *http.Client, base string) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		if status, _, _, err := call(t, c, "GET", base+"/healthcheck", "", ""); err == nil && status == 200 {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("not ready over TLS within 30s")
}

// TestSecurity_probesAndDefaults: --auth-health closes the probes, and
// modelserve health then needs the token (and the CA over TLS); with no
// auth the server warns once, and --require-auth refuses to start.
func TestSecurity_probesAndDefaults(t *testing.T) {
	dir := t.TempDir()
	authority := newCA(t, "test CA")
	certPEM, keyPEM, _ := authority.issue("localhost", true)
	caPath := write(t, filepath.Join(dir, "ca.pem"), authority.pem)
	tokenPath := write(t, filepath.Join(dir, "token"), []byte("probe-token-0123456789\n"))
	c := newCLI(t)
	c.logIris()
	debug := freeAddr(t)
	s := c.serve("--model", "iris", "--auth-health", "--debug-addr", debug,
		"--auth-tokens", write(t, filepath.Join(dir, "tokens"), []byte("kubelet predict probe-token-0123456789\nops admin ops-admin-token-0123456789\n")),
		"--tls-cert", write(t, filepath.Join(dir, "cert.pem"), certPEM), "--tls-key", write(t, filepath.Join(dir, "key.pem"), keyPEM))
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(s.url, "http://"))
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, _, err := c.run("health", "--port", port, "--ca", caPath, "--token-file", tokenPath)
		if err == nil && strings.TrimSpace(out) == "ready" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health with the token: %v %s", err, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, errOut, err := c.run("health", "--port", port, "--ca", caPath); err == nil || !strings.Contains(errOut, "401 Unauthorized") {
		t.Errorf("health without the token: %v %s", err, errOut)
	}
	if _, errOut, err := c.run("health", "--port", port); err == nil {
		t.Errorf("health over plain HTTP to a TLS port: %v %s", err, errOut)
	}
	// The debug listener is TLS too, and needs the admin scope.
	client := httpsClient([][]byte{authority.pem}, nil, false)
	for _, tt := range []struct {
		token string
		want  int
	}{{"", 401}, {"probe-token-0123456789", 403}, {"ops-admin-token-0123456789", 200}} {
		if status, body, _, err := call(t, client, "GET", "https://"+debug+"/debug/pprof/", tt.token, ""); err != nil || status != tt.want {
			t.Errorf("the profiler with token %q: %v %d %.80s, want %d", tt.token, err, status, body, tt.want)
		}
	}

	open := c.serve("--model", "iris")
	open.waitReady()
	if n := strings.Count(open.logs.String(), "no auth is configured: anyone who reaches this address may run the model"); n != 1 {
		t.Errorf("the no-auth warning appears %d times", n)
	}
	_, errOut, err := c.run("serve", "--model", "iris", "--port", "0", "--require-auth")
	if err == nil || !strings.Contains(errOut, "--require-auth: no credential is configured") {
		t.Errorf("--require-auth with nothing configured: %v %s", err, errOut)
	}
	_, errOut, err = c.run("serve", "--model", "iris", "--port", "0", "--auth-tokens", write(t, filepath.Join(dir, "bad"), []byte("x predict short\n")))
	if err == nil || !strings.Contains(errOut, "line 1: x's token has 5 characters") {
		t.Errorf("a broken tokens file at start: %v %s", err, errOut)
	}
}

// freeAddr is a loopback address nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// waitLog waits for a line the server logs per request: those are
// written a tenth of a second at a time.
func waitLog(t *testing.T, s *service, want string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(s.logs.String(), want) {
		if time.Now().After(deadline) {
			t.Errorf("the log lacks %q:\n%s", want, s.logs)
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestSecurity_trustedProxiesAndSIGHUP: a trusted proxy names the caller
// in sf-context-current-user and the request runs as that caller; a
// server that trusts other addresses ignores the header. SIGHUP reloads a
// tokens file whose change the watcher could not see (same size, time and
// inode).
func TestSecurity_trustedProxiesAndSIGHUP(t *testing.T) {
	dir := t.TempDir()
	c := newCLI(t)
	c.logIris()
	trusting := c.serve("--model", "iris", "--trusted-proxies", "127.0.0.1/32")
	trusting.waitReady()
	status, body, _, err := call(t, http.DefaultClient, "POST", trusting.url+"/predict", "", irisBody, "sf-context-current-user", "JDOE")
	if err != nil || status != 200 {
		t.Fatalf("a trusted proxy's caller: %v %d %s", err, status, body)
	}
	waitLog(t, trusting, "principal=JDOE model=iris version=1 function=predict rows=1 status=200")
	if status, body, _, _ := call(t, http.DefaultClient, "POST", trusting.url+"/predict", "", irisBody); status != 401 {
		t.Errorf("no caller named by the proxy: %d %s", status, body)
	}
	elsewhere := c.serve("--model", "iris", "--trusted-proxies", "10.0.0.0/8")
	elsewhere.waitReady()
	if status, body, _, _ := call(t, http.DefaultClient, "POST", elsewhere.url+"/predict", "", irisBody, "sf-context-current-user", "JDOE"); status != 401 {
		t.Errorf("an untrusted address naming a caller: %d %s", status, body)
	}

	tokens := write(t, filepath.Join(dir, "tokens"), []byte("a predict token-a-0123456789abcdef\n"))
	st, err := os.Stat(tokens)
	if err != nil {
		t.Fatal(err)
	}
	s := c.serve("--model", "iris", "--auth-tokens", tokens)
	s.waitReady()
	// Same length, written in place, the time put back: only SIGHUP tells.
	if err := os.WriteFile(tokens, []byte("b predict token-b-0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(tokens, st.ModTime(), st.ModTime()); err != nil {
		t.Fatal(err)
	}
	time.Sleep(600 * time.Millisecond)
	if status, _, _, _ := call(t, http.DefaultClient, "POST", s.url+"/predict", "token-b-0123456789abcdef", irisBody); status != 401 {
		t.Fatalf("the watcher saw a change it should not have (%d): the test proves nothing", status)
	}
	s.cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, _, _, _ := call(t, http.DefaultClient, "POST", s.url+"/predict", "token-b-0123456789abcdef", irisBody)
		if status == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("SIGHUP did not reload the tokens (%d)\n%s", status, s.logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitLog(t, s, "why=SIGHUP")
}

// TestSecurity_serviceUpCarriesTheCredentials: a spec written with the
// credentials as secrets runs under service up with those secrets given
// as folders: the instance serves HTTPS (the endpoint passes TLS
// through), is probed over HTTPS, and wants the token.
func TestSecurity_serviceUpCarriesTheCredentials(t *testing.T) {
	dir := t.TempDir()
	authority := newCA(t, "test CA")
	certPEM, keyPEM, _ := authority.issue("localhost", true)
	tokensDir, tlsDir := filepath.Join(dir, "tokens"), filepath.Join(dir, "tls")
	for _, d := range []string{tokensDir, tlsDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	write(t, filepath.Join(tokensDir, "tokens"), []byte("gateway predict gateway-token-0123456789\n"))
	write(t, filepath.Join(tlsDir, "tls.crt"), certPEM)
	write(t, filepath.Join(tlsDir, "tls.key"), keyPEM)
	c := newCLI(t)
	c.logIris()
	specFile := filepath.Join(dir, "iris.yaml")
	c.must("service", "spec", "--model", "iris", "--image", "127.0.0.1:1/not-pulled/iris:1", "--workers", "1",
		"--auth-tokens-secret", "iris_tokens", "--tls-secret", "iris_tls", "--require-auth", "-o", specFile)
	u := c.serviceUp("iris", specFile, "--secret", "iris_tokens="+tokensDir, "--secret", "iris_tls="+tlsDir)
	st := u.waitFor("the instance ready over HTTPS", allReady)
	base := "https://" + st.Endpoints[0].Address
	client := httpsClient([][]byte{authority.pem}, nil, false)
	// Before service up stops: its drain waits for the connections a
	// TLS endpoint passes through.
	t.Cleanup(client.CloseIdleConnections)
	if status, body, _, err := call(t, client, "POST", base+"/predict", "gateway-token-0123456789", irisBody); err != nil || status != 200 || !strings.Contains(body, `"label":0`) {
		t.Fatalf("with the token through the endpoint: %v %d %s", err, status, body)
	}
	if status, _, _, err := call(t, client, "POST", base+"/predict", "", irisBody); err != nil || status != 401 {
		t.Fatalf("without a token: %v %d", err, status)
	}
}
