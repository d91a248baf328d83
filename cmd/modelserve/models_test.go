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

// postFrom posts a JSON body from any goroutine: the answer, its body
// read and closed, or the error.
func postFrom(url, body string) (*http.Response, []byte, error) {
	resp, err := http.Post(url, "application/json", strings.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, b, err
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
		`modelserve_requests_total{function="predict",model="iris",outcome="ok",protocol="gateway",version="1"}`,
		`modelserve_requests_total{function="predict",model="mlp",outcome="ok",protocol="gateway",version="1"}`,
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
			resp, b, err := postFrom(s.url+"/iris/predict", body)
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

func TestServe_repositoryLoadsAndUnloadsModelsWhileServing(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	for _, v := range []string{"1", "2"} {
		c.must("registry", "log", "--name", "mlp", "--version", v, "--file", testenv.Model(t, "mlp"))
	}
	if s := c.serve("--model", "iris", "--workers", "1"); true {
		s.waitReady()
		if code, body := s.post("/v2/repository/models/mlp/load", ""); code != 404 {
			t.Errorf("the repository API without auth or --model-control = %d %s", code, body)
		}
		s.stop()
	}
	s := c.serve("--model", "iris", "--workers", "1", "--model-control")
	s.waitReady()
	index := func(body string) string {
		t.Helper()
		code, b := s.post("/v2/repository/index", body)
		if code != 200 {
			t.Fatalf("index = %d %s", code, b)
		}
		return b
	}
	if got := index(""); got != `[{"name":"iris","version":"1","state":"READY"},{"name":"mlp","state":"UNAVAILABLE","reason":"not loaded"}]` {
		t.Errorf("index before any load: %s", got)
	}
	if code, body := s.post("/mlp/predict", mlpBody(1)); code != 404 {
		t.Errorf("/mlp/predict before mlp is loaded = %d %s", code, body)
	}

	// Loaded at a version, then switched live to another.
	if code, body := s.post("/v2/repository/models/mlp/load", `{"parameters": {"version": "1"}}`); code != 200 {
		t.Fatalf("load mlp:1 = %d %s", code, body)
	}
	if code, body := s.post("/mlp/predict", mlpBody(3)); code != 200 || strings.Count(body, `"y"`) != 3 {
		t.Errorf("/mlp/predict once loaded = %d %.200s", code, body)
	}
	if code, body := s.post("/v2/repository/models/mlp/load", `{"parameters": {"version": "2"}}`); code != 200 {
		t.Fatalf("load mlp:2 over mlp:1 = %d %s", code, body)
	}
	if got := index(`{"ready": true}`); got != `[{"name":"iris","version":"1","state":"READY"},{"name":"mlp","version":"2","state":"READY"}]` {
		t.Errorf("ready models after the switch: %s", got)
	}
	for _, tc := range []struct {
		path, body string
		code       int
	}{
		{"/v2/repository/models/dlrm/load", "", 404},
		{"/v2/repository/models/mlp/load", `{"parameters": {"version": "7"}}`, 404},
		{"/v2/repository/models/mlp/load", `{"parameters": {"version": "../1"}}`, 400},
		{"/v2/repository/models/mlp/load", `{"parameters": `, 400},
		{"/v2/repository/models/Bad%20Name/load", "", 400},
		{"/v2/repository/models/dlrm/unload", "", 404},
	} {
		if code, body := s.post(tc.path, tc.body); code != tc.code || !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("POST %s %s = %d %s, want %d and an error", tc.path, tc.body, code, body, tc.code)
		}
	}

	// Unloaded under load: what was admitted is answered, then the
	// routes are gone.
	var mu sync.Mutex
	codes := map[int]int{}
	stop := steadyLoad(4, func() error {
		resp, b, err := postFrom(s.url+"/mlp/predict", mlpBody(64))
		if err != nil {
			return err
		}
		mu.Lock()
		codes[resp.StatusCode]++
		mu.Unlock()
		if resp.StatusCode == 200 && strings.Count(string(b), `"y"`) != 64 || resp.StatusCode != 200 && resp.StatusCode != 404 {
			return fmt.Errorf("%d %.200s", resp.StatusCode, b)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	if code, body := s.post("/v2/repository/models/mlp/unload", ""); code != 200 {
		t.Fatalf("unload = %d %s", code, body)
	}
	time.Sleep(200 * time.Millisecond)
	r := stop()
	if r.failed > 0 || codes[200] == 0 || codes[404] == 0 {
		t.Fatalf("unloading under load: answers %v, %d failed, first: %v", codes, r.failed, r.first)
	}
	if got := index(""); !strings.Contains(got, `{"name":"mlp","state":"UNAVAILABLE","reason":"not loaded"}`) {
		t.Errorf("index after the unload: %s", got)
	}
	if code, body := s.post("/iris/predict", irisBody); code != 200 {
		t.Errorf("iris after mlp was unloaded = %d %s", code, body)
	}
	if _, m := s.get("/metrics"); !strings.Contains(m, `modelserve_model_loads_total{event="unload",model="mlp",outcome="ok"} 2`) {
		t.Errorf("the unloads of mlp (switched from 1, then unloaded) are not counted:\n%s", regexp.MustCompile(`(?m)^modelserve_model_loads_total.*$`).FindAllString(m, -1))
	}
	// Nothing holds mlp's versions any more.
	c.must("registry", "delete", "mlp:2")
}

func TestServe_aLoadBeyondTheBudgetIsRefusedOrEvicts(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	c.must("registry", "log", "--name", "mlp", "--version", "1", "--file", testenv.Model(t, "mlp"))
	c.must("registry", "log", "--name", "dlrm", "--version", "1", "--file", testenv.Model(t, "dlrm"))

	// One model at most: the second load is refused, with the numbers.
	s := c.serve("--model", "iris", "--workers", "1", "--max-loaded-models", "1", "--model-control")
	s.waitReady()
	if code, body := s.post("/v2/repository/models/mlp/load", ""); code != 507 || !strings.Contains(body, "1 models are loaded, the most --max-loaded-models allows") {
		t.Errorf("a second model past --max-loaded-models 1 = %d %s", code, body)
	}
	s.stop()

	// A memory budget iris alone nearly fills: mlp does not fit.
	s = c.serve("--model", "iris", "--workers", "1", "--model-memory", "1Ki", "--model-control")
	s.waitReady()
	code, body := s.post("/v2/repository/models/mlp/load", "")
	if code != 507 || !regexp.MustCompile(`it needs about [0-9.]+ \S+; the models loaded hold [0-9.]+ \S+ of the 1\.0 KiB they may hold`).MatchString(body) {
		t.Errorf("a load past --model-memory = %d %s", code, body)
	}
	s.stop()

	// With --evict-idle, the least recently used idle model makes room.
	s = c.serve("--model", "iris", "--model", "mlp", "--workers", "1", "--max-loaded-models", "2", "--evict-idle", "1s", "--model-control")
	s.waitReady()
	s.post("/iris/predict", irisBody) // iris used, mlp not since loading
	time.Sleep(1100 * time.Millisecond)
	s.post("/iris/predict", irisBody) // iris used again: mlp is the idlest
	if code, body := s.post("/v2/repository/models/dlrm/load", ""); code != 200 {
		t.Fatalf("a load that evicts = %d %s", code, body)
	}
	if code, _ := s.post("/mlp/predict", mlpBody(1)); code != 404 {
		t.Errorf("the evicted mlp still answers: %d", code)
	}
	if code, body := s.post("/iris/predict", irisBody); code != 200 {
		t.Errorf("iris, recently used, was evicted: %d %s", code, body)
	}
	waitLog(t, s, "unloading the least recently used idle model to make room")
	// Nothing idle long enough: refused.
	s.post("/iris/predict", irisBody)
	if code, body := s.post("/v2/repository/models/mlp/load", ""); code != 507 || !strings.Contains(body, "no model has been idle for 1s") {
		t.Errorf("a load with nothing idle enough = %d %s", code, body)
	}
}
