package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelserve/modelserve/internal/testenv"
)

// gatewayRows is a request of n rows, each row's arguments args.
func gatewayRows(n int, args string) string {
	var b strings.Builder
	b.WriteString(`{"data": [`)
	for i := range n {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "[%d, %s]", i, args)
	}
	b.WriteString("]}")
	return b.String()
}

// mlpBody is a request of n rows for the mlp test model (64 floats).
func mlpBody(n int) string {
	return gatewayRows(n, "["+strings.TrimSuffix(strings.Repeat("0.25, ", 64), ", ")+"]")
}

// irisRowsBody is a request of n iris rows.
func irisRowsBody(n int) string { return gatewayRows(n, "5.1, 3.5, 1.4, 0.2") }

func TestServe_severalModelsInOneProcess(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	c.must("registry", "log", "--name", "mlp", "--version", "1", "--file", testenv.Model(t, "mlp"))
	s := c.serve("--model", "iris", "--model", "mlp:1", "--workers", "1", "--memory-budget", "64Mi")
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
		// One budget of 64 MiB, shared.
		`modelserve_memory_budget_bytes{model="iris",version="1"} 3.3554432e+07`,
		`modelserve_memory_budget_bytes{model="mlp",version="1"} 3.3554432e+07`,
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

func TestServe_followsAnAliasUnderLoadWithNoFailedRequest(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	for _, v := range []string{"2", "3"} {
		c.must("registry", "log", "--name", "iris", "--version", v, "--file", testenv.Model(t, "iris"),
			"--function", "predict=label", "--function", "predict_proba=probabilities",
			"--features", "sepal_length,sepal_width,petal_length,petal_width")
	}
	c.must("registry", "alias", "iris", "prod", "1")
	// A wait target the steady load never reaches: a 429 here would be
	// admission's, not the switch's.
	s := c.serve("--model", "iris:prod", "--follow-interval", "50ms", "--workers", "1", "--max-queue-wait", "5s")
	s.waitReady()

	var mu sync.Mutex
	seen := map[string]int{}
	send := func(rows int) func() error {
		body := irisRowsBody(rows)
		return func() error {
			resp, err := http.Post(s.url+"/iris/predict", "application/json", strings.NewReader(body))
			if err != nil {
				return err
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				return err
			}
			if resp.StatusCode != 200 || strings.Count(string(b), `"label"`) != rows {
				return fmt.Errorf("%d rows: %d %s (version %s, retry after %s) %.200s", rows, resp.StatusCode, resp.Header.Get("X-Modelserve-Rejected"), resp.Header.Get("X-Modelserve-Version"), resp.Header.Get("Retry-After"), b)
			}
			v := resp.Header.Get("X-Modelserve-Version")
			if v != "1" && v != "2" {
				return fmt.Errorf("an answer from version %q", v)
			}
			mu.Lock()
			seen[v]++
			mu.Unlock()
			return nil
		}
	}
	small, large := steadyLoad(4, send(1)), steadyLoad(1, send(4096))
	time.Sleep(500 * time.Millisecond)
	c.must("registry", "alias", "iris", "prod", "2")
	for deadline := time.Now().Add(30 * time.Second); metric(t, s, `modelserve_version_switches_total{model="iris",outcome="ok"}`) < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the alias move was not taken into service\n%s", s.logs)
		}
	}
	time.Sleep(500 * time.Millisecond)
	rs, rl := small(), large()
	if rs.failed+rl.failed > 0 {
		t.Fatalf("%d of %d 1-row and %d of %d 4096-row requests failed across the switch; first: %v %v",
			rs.failed, rs.sent, rl.failed, rl.sent, rs.first, rl.first)
	}
	t.Logf("answers by version: %v (1-row %d, 4096-row %d)", seen, rs.sent, rl.sent)
	if seen["1"] == 0 || seen["2"] == 0 {
		t.Errorf("answers by version %v: want both", seen)
	}
	// Version 1 is unloaded: nothing holds it, and it can be deleted.
	waitLog(t, s, "msg=unloaded model=iris alias=prod version=1")
	c.must("registry", "delete", "iris:1")

	// A version that cannot load leaves the old one serving.
	out := c.must("registry", "show", "iris:3")
	file := regexp.MustCompile(`file\s+(\S+)`).FindStringSubmatch(out)[1]
	if err := os.WriteFile(file, []byte("damaged"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.must("registry", "alias", "iris", "prod", "3")
	for deadline := time.Now().Add(30 * time.Second); metric(t, s, `modelserve_version_switches_total{model="iris",outcome="failed"}`) < 1; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the failed switch was not counted\n%s", s.logs)
		}
	}
	if err := send(1)(); err != nil {
		t.Errorf("after a failed switch: %v", err)
	}
	if v := seen["2"]; v == 0 {
		t.Error("version 2 stopped answering")
	}
	if _, errOut, err := c.run("registry", "delete", "iris:2"); err == nil || !strings.Contains(errOut, "in use") {
		t.Errorf("deleting the version being served: %v %s", err, errOut)
	}
	if err := s.stop(); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, s.logs)
	}
}
