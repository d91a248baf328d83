package main

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/modelserve/modelserve/internal/testenv"
)

// mlpBody is a request of rows rows for the mlp test model (64 floats).
func mlpBody(rows int) string {
	var b strings.Builder
	b.WriteString(`{"data": [`)
	for r := range rows {
		if r > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "[%d, [%s]]", r, strings.TrimSuffix(strings.Repeat("0.25, ", 64), ", "))
	}
	b.WriteString("]}")
	return b.String()
}

func TestServe_severalModelsInOneProcess(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	c.must("registry", "log", "--name", "mlp", "--version", "1", "--file", testenv.Model(t, "mlp"))
	s := c.serve("--model", "iris", "--model", "mlp:1", "--workers", "1")
	s.waitReady()

	// Both answer at once, each on its own routes.
	stop := steadyLoad(4, func() error {
		if code, body := s.post("/iris/predict", irisBody); code != 200 || body != `{"data":[[0,{"label":0}]]}` {
			return fmt.Errorf("/iris/predict = %d %s", code, body)
		}
		if code, body := s.post("/mlp/predict", mlpBody(16)); code != 200 || strings.Count(body, `"y"`) != 16 {
			return fmt.Errorf("/mlp/predict = %d %.200s", code, body)
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	r := stop()
	if r.failed > 0 || r.sent < 8 {
		t.Fatalf("%d of %d rounds failed: %v", r.failed, r.sent, r.first)
	}
	tests := []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/iris/predict-proba", irisBody, 200, `"probabilities":[`},
		{"POST", "/predict", irisBody, 404, "unknown function /predict"}, // two models and no default
		{"GET", "/health", "", 200, "ready"},
		{"GET", "/health/iris", "", 200, "ready"},
		{"GET", "/health/mlp", "", 200, "ready"},
		{"GET", "/health/dlrm", "", 404, "no model"},
	}
	for _, tt := range tests {
		var code int
		var body string
		if tt.method == "POST" {
			code, body = s.post(tt.path, tt.body)
		} else {
			code, body = s.get(tt.path)
		}
		if code != tt.code || !strings.Contains(body, tt.want) {
			t.Errorf("%s %s = %d %.300s, want %d with %q", tt.method, tt.path, code, body, tt.code, tt.want)
		}
	}
	_, metrics := s.get("/metrics")
	for _, want := range []string{
		`modelserve_requests_total{function="predict",model="iris",outcome="ok",version="1"}`,
		`modelserve_requests_total{function="predict",model="mlp",outcome="ok",version="1"}`,
		`modelserve_batch_rows_count{model="mlp",version="1"}`,
		`modelserve_ready 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if err := s.stop(); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, s.logs)
	}
}

func TestServe_allModelsAndADefault(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	c.must("registry", "log", "--name", "mlp", "--version", "1", "--file", testenv.Model(t, "mlp"))
	c.must("registry", "log", "--name", "mlp", "--version", "2", "--file", testenv.Model(t, "mlp"))
	s := c.serve("--all", "--default-model", "iris", "--workers", "1")
	s.waitReady()
	if code, body := s.post("/predict", irisBody); code != 200 {
		t.Errorf("/predict with iris the default = %d %s", code, body)
	}
	if code, body := s.post("/mlp/predict", mlpBody(1)); code != 200 {
		t.Errorf("/mlp/predict = %d %s", code, body)
	}
	if _, metrics := s.get("/metrics"); !strings.Contains(metrics, `modelserve_batch_rows_count{model="mlp",version="2"}`) {
		t.Error("--all did not serve mlp's latest version, 2")
	}
	for _, args := range [][]string{
		{"serve", "--all", "--model", "iris"},
		{"serve", "--model", "iris", "--model", "iris:1"},
		{"serve"},
		{"serve", "--model", "iris", "--model", "mlp", "--default-model", "dlrm"},
	} {
		if _, stderr, err := c.run(args...); err == nil {
			t.Errorf("%v started", args)
		} else if strings.Contains(stderr, "panic") {
			t.Errorf("%v: %s", args, stderr)
		}
	}
}
