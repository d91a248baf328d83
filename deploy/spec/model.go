package spec

import (
	"fmt"
	"strconv"
)

// Names and defaults of the spec written for a model service.
const (
	ModelContainer = "model-inference"
	ModelEndpoint  = "inference"
	ModelPort      = 8080
	ReadinessPath  = "/healthcheck"
	ModelEnv       = "MODELSERVE_MODEL"
)

// ModelService is what a model service's spec is written from.
type ModelService struct {
	Model        string // NAME:VERSION, pinned
	Image        string
	GPUs         int
	Workers      int // 0: the server's default plan
	MaxBatchRows int // 0: the version's registry setting
	Ingress      bool
	CPU, Memory  Quantity // requests; zero leaves them to the scheduler
	Auth         AuthSecrets
}

// AuthSecrets name the secret objects a model service's credentials come
// from, each mounted as files under AuthDir (as Kubernetes Secrets on a
// cluster). Probes stay unauthenticated.
type AuthSecrets struct {
	// Tokens holds the key "tokens": serve's --auth-tokens file.
	Tokens string
	// JWKS holds the key "jwks.json"; Issuer and Audience go with it.
	JWKS             string
	Issuer, Audience string
	// TLS holds "tls.crt" and "tls.key" (a Kubernetes TLS Secret's keys);
	// ClientCA holds "ca.crt" and turns on mutual TLS.
	TLS, ClientCA string
	// Require refuses to start without a credential.
	Require bool
}

// AuthDir is where a model service's credential secrets are mounted, a
// folder per secret (tokens, jwks, tls, client-ca).
const AuthDir = "/run/secrets/modelserve"

// TLSEnv is the variable that turns a modelserve container's listener to
// HTTPS: its probes then use HTTPS too.
const TLSEnv = "MODELSERVE_TLS_CERT"

// ServesTLS reports whether the container is a modelserve server that
// speaks HTTPS on its port.
func (c Container) ServesTLS() bool { return c.Env[TLSEnv] != "" }

// mount adds a secret mounted as files under AuthDir/dir and sets each
// variable to a key's file there.
func (a AuthSecrets) mount(c *Container, secret, dir string, vars map[string]string) {
	if secret == "" {
		return
	}
	path := AuthDir + "/" + dir
	c.Secrets = append(c.Secrets, Secret{SnowflakeSecret: secret, DirectoryPath: path})
	for v, key := range vars {
		c.Env[v] = path + "/" + key
	}
}

// ForModel writes the spec of a service that serves one model version: one
// container, model-inference, whose readiness probe gates traffic to the
// endpoint inference. The settings travel as MODELSERVE_* variables, which
// modelserve serve reads like its flags.
func ForModel(m ModelService) (*Spec, error) {
	if m.Model == "" || m.Image == "" {
		return nil, fmt.Errorf("a model service needs a model and an image")
	}
	if m.GPUs < 0 || m.Workers < 0 || m.MaxBatchRows < 0 {
		return nil, fmt.Errorf("GPUs, workers and batch rows cannot be negative")
	}
	port := strconv.Itoa(ModelPort)
	env := map[string]string{ModelEnv: m.Model, "MODELSERVE_PORT": port}
	if m.Workers > 0 {
		env["MODELSERVE_WORKERS"] = strconv.Itoa(m.Workers)
	}
	if m.MaxBatchRows > 0 {
		env["MODELSERVE_MAX_BATCH_ROWS"] = strconv.Itoa(m.MaxBatchRows)
	}
	c := Container{
		Name:           ModelContainer,
		Image:          m.Image,
		Env:            env,
		ReadinessProbe: &Probe{Port: ModelPort, Path: ReadinessPath},
	}
	if m.GPUs > 0 || !m.CPU.IsZero() || !m.Memory.IsZero() {
		c.Resources = &Resources{}
		c.Resources.Requests.CPU, c.Resources.Requests.Memory = m.CPU, m.Memory
	}
	a := m.Auth
	if a.JWKS == "" && (a.Issuer != "" || a.Audience != "") {
		return nil, fmt.Errorf("an issuer or audience needs the JWKS secret")
	}
	if a.ClientCA != "" && a.TLS == "" {
		return nil, fmt.Errorf("mutual TLS (a client CA secret) needs the TLS secret")
	}
	a.mount(&c, a.Tokens, "tokens", map[string]string{"MODELSERVE_AUTH_TOKENS": "tokens"})
	a.mount(&c, a.JWKS, "jwks", map[string]string{"MODELSERVE_AUTH_JWKS": "jwks.json"})
	a.mount(&c, a.TLS, "tls", map[string]string{TLSEnv: "tls.crt", "MODELSERVE_TLS_KEY": "tls.key"})
	a.mount(&c, a.ClientCA, "client-ca", map[string]string{"MODELSERVE_TLS_CLIENT_CA": "ca.crt"})
	if a.Issuer != "" {
		env["MODELSERVE_AUTH_ISSUER"] = a.Issuer
	}
	if a.Audience != "" {
		env["MODELSERVE_AUTH_AUDIENCE"] = a.Audience
	}
	if a.Require {
		env["MODELSERVE_REQUIRE_AUTH"] = "true"
	}
	if m.GPUs > 0 {
		// On a GPU node the service must use the GPU or fail at start,
		// never fall back to CPU quietly.
		env["MODELSERVE_DEVICE"] = "cuda"
		gpus := MustQuantity(strconv.Itoa(m.GPUs))
		c.Resources.Requests.GPU, c.Resources.Limits.GPU = gpus, gpus
	}
	proto := ProtocolHTTP
	if a.TLS != "" {
		proto = ProtocolHTTPS // TLS passes through to the server
	}
	return &Spec{
		Containers: []Container{c},
		Endpoints:  []Endpoint{{Name: ModelEndpoint, Port: ModelPort, Public: m.Ingress, Protocol: proto}},
	}, nil
}
