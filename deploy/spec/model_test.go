package spec

import (
	"strings"
	"testing"
)

func TestForModel_authSecrets(t *testing.T) {
	tests := []struct {
		name    string
		auth    AuthSecrets
		wantEnv map[string]string
		wantErr string
	}{
		{"tokens", AuthSecrets{Tokens: "iris_tokens"}, map[string]string{"MODELSERVE_AUTH_TOKENS": AuthDir + "/tokens/tokens"}, ""},
		{"jwt", AuthSecrets{JWKS: "idp", Issuer: "https://idp", Audience: "ms"}, map[string]string{
			"MODELSERVE_AUTH_JWKS": AuthDir + "/jwks/jwks.json", "MODELSERVE_AUTH_ISSUER": "https://idp", "MODELSERVE_AUTH_AUDIENCE": "ms"}, ""},
		{"mutual TLS", AuthSecrets{TLS: "tls", ClientCA: "ca", Require: true}, map[string]string{
			TLSEnv: AuthDir + "/tls/tls.crt", "MODELSERVE_TLS_KEY": AuthDir + "/tls/tls.key",
			"MODELSERVE_TLS_CLIENT_CA": AuthDir + "/client-ca/ca.crt", "MODELSERVE_REQUIRE_AUTH": "true"}, ""},
		{"an issuer without keys", AuthSecrets{Issuer: "https://idp"}, nil, "needs the JWKS secret"},
		{"a client CA without TLS", AuthSecrets{ClientCA: "ca"}, nil, "needs the TLS secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ForModel(ModelService{Model: "iris:1", Image: "img:1", Auth: tt.auth})
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			c := s.Containers[0]
			for k, v := range tt.wantEnv {
				if c.Env[k] != v {
					t.Errorf("%s = %q, want %q", k, c.Env[k], v)
				}
			}
			// What is written must parse, its secrets mounted as files.
			data, err := s.Marshal()
			if err != nil {
				t.Fatal(err)
			}
			p, err := Parse("spec.yaml", data)
			if err != nil {
				t.Fatalf("%v\n%s", err, data)
			}
			for _, sec := range p.Spec.Containers[0].Secrets {
				if !strings.HasPrefix(sec.DirectoryPath, AuthDir+"/") || sec.EnvVarName != "" {
					t.Errorf("secret %+v is not mounted under %s", sec, AuthDir)
				}
			}
			if c.ServesTLS() != (tt.auth.TLS != "") {
				t.Errorf("ServesTLS = %v", c.ServesTLS())
			}
		})
	}
}
