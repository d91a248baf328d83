package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/modelserve/modelserve/internal/testenv"
)

// binary is the modelserve executable TestMain builds for these tests.
var binary string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modelserve-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	binary = filepath.Join(dir, "modelserve")
	if out, err := exec.Command("go", "build", "-o", binary, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building modelserve: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cli runs modelserve against one temporary registry.
type cli struct {
	t        *testing.T
	registry string
	// bin is the executable to run, when not the one TestMain built.
	bin string
}

func newCLI(t *testing.T) cli {
	return cli{t: t, registry: t.TempDir()}
}

func (c cli) command(args ...string) *exec.Cmd {
	bin := binary
	if c.bin != "" {
		bin = c.bin
	}
	cmd := exec.Command(bin, append([]string{"--registry", c.registry}, args...)...)
	cmd.Env = os.Environ()
	return cmd
}

// run returns stdout, stderr and the error of one command.
func (c cli) run(args ...string) (string, string, error) {
	c.t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := c.command(args...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	return stdout.String(), stderr.String(), err
}

func (c cli) must(args ...string) string {
	c.t.Helper()
	out, errOut, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("modelserve %s: %v\n%s", strings.Join(args, " "), err, errOut)
	}
	return out
}

func (c cli) logIris() {
	c.t.Helper()
	c.must("registry", "log", "--name", "iris", "--version", "1", "--file", testenv.Model(c.t, "iris"),
		"--function", "predict=label", "--function", "predict_proba=probabilities",
		"--features", "sepal_length,sepal_width,petal_length,petal_width", "--comment", "example")
}

// service is a running modelserve serve process.
type service struct {
	t    *testing.T
	cmd  *exec.Cmd
	url  string
	logs *testenv.SyncBuffer
	done chan error
}

var listeningRE = regexp.MustCompile(`msg=listening .*addr=(\S+)`)

// serve starts modelserve serve on a free port and returns once it listens;
// the service is stopped when the test ends.
func (c cli) serve(args ...string) *service {
	c.t.Helper()
	cmd := c.command(append([]string{"serve", "--host", "127.0.0.1", "--port", "0"}, args...)...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	s := &service{t: c.t, cmd: cmd, logs: &testenv.SyncBuffer{}, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			fmt.Fprintln(s.logs, line)
			if m := listeningRE.FindStringSubmatch(line); m != nil {
				addr <- m[1]
			}
		}
		s.done <- cmd.Wait()
	}()
	select {
	case a := <-addr:
		s.url = "http://" + a
	case err := <-s.done:
		c.t.Fatalf("serve exited before listening: %v\n%s", err, s.logs)
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		c.t.Fatalf("serve did not listen within 30s\n%s", s.logs)
	}
	c.t.Cleanup(func() { s.stop() })
	return s
}

// stop sends SIGTERM and waits for a clean exit.
func (s *service) stop() error {
	if s.cmd.ProcessState != nil {
		return nil
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-s.done:
		return err
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		return fmt.Errorf("serve did not stop within 30s")
	}
}

// logged says whether the server has logged a line containing want,
// waiting up to 10 s: its log reaches s.logs through a pipe another
// goroutine reads, so a line written before an answer may come after it.
func (s *service) logged(want string) bool {
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(s.logs.String(), want); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			return false
		}
	}
	return true
}

// waitReady polls the readiness probe; every answer before 200 must be 503.
func (s *service) waitReady() {
	s.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(s.url + "/healthcheck")
		if err == nil {
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			switch resp.StatusCode {
			case 200:
				if string(body) != `{"status":"ready"}` {
					s.t.Fatalf("ready body = %s", body)
				}
				return
			case 503:
				if string(body) != `{"status":"not ready"}` {
					s.t.Fatalf("not-ready body = %s", body)
				}
			default:
				s.t.Fatalf("readiness answered %d %s", resp.StatusCode, body)
			}
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.t.Fatalf("not ready within 30s\n%s", s.logs)
}

func (s *service) post(path, body string) (int, string) {
	s.t.Helper()
	resp, err := http.Post(s.url+path, "application/json", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (s *service) get(path string) (int, string) {
	s.t.Helper()
	resp, err := http.Get(s.url + path)
	if err != nil {
		s.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// prediction is one parsed response row.
type prediction struct {
	Row    int64
	Values map[string]any
}

func parseRows(t *testing.T, body string) []prediction {
	t.Helper()
	var resp struct{ Data [][2]json.RawMessage }
	if err := json.Unmarshal([]byte(body), &resp); err != nil {
		t.Fatalf("response is not {\"data\": [[row, {...}], ...]}: %v\n%s", err, body)
	}
	out := make([]prediction, len(resp.Data))
	for i, r := range resp.Data {
		if err := json.Unmarshal(r[0], &out[i].Row); err != nil {
			t.Fatalf("row %d number: %v", i, err)
		}
		if err := json.Unmarshal(r[1], &out[i].Values); err != nil {
			t.Fatalf("row %d object: %v", i, err)
		}
	}
	return out
}

func TestRegistryCLI_logShowListDelete(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	show := c.must("registry", "show", "iris:1")
	for _, want := range []string{
		"features  float32[?, 4]",
		"label          int64[?]",
		"probabilities  float32[?, 3]",
		"predict_proba  POST /predict-proba  returns probabilities",
		"(sepal_length FLOAT, sepal_width FLOAT, petal_length FLOAT, petal_width FLOAT)",
		"or (features ARRAY)",
		"sha256",
		"comment      example",
	} {
		if !strings.Contains(show, want) {
			t.Errorf("registry show lacks %q:\n%s", want, show)
		}
	}
	var manifest struct {
		SHA256 string `json:"sha256"`
		Size   int64  `json:"size"`
	}
	if err := json.Unmarshal([]byte(c.must("registry", "show", "iris", "--json")), &manifest); err != nil || len(manifest.SHA256) != 64 || manifest.Size == 0 {
		t.Errorf("show --json = %+v, %v", manifest, err)
	}
	c.must("registry", "alias", "iris", "prod", "1")
	if list := c.must("registry", "list"); !regexp.MustCompile(`iris\s+1\s+prod\s+\S+ \S+\s+\S+ B\s+predict,predict_proba`).MatchString(list) {
		t.Errorf("registry list:\n%s", list)
	}
	if show := c.must("registry", "show", "iris:prod"); !strings.Contains(show, "iris:1") || !strings.Contains(show, "aliases      prod") {
		t.Errorf("registry show iris:prod:\n%s", show)
	}
	if _, errOut, err := c.run("registry", "delete", "iris:1"); err == nil || !strings.Contains(errOut, "move or remove the alias first") {
		t.Errorf("deleting an aliased version: %v %s", err, errOut)
	}
	c.must("registry", "alias", "--remove", "iris", "prod")
	c.must("registry", "delete", "iris:1")
	if _, errOut, err := c.run("registry", "show", "iris:1"); err == nil || !strings.Contains(errOut, "not found") {
		t.Errorf("show after delete: %v %s", err, errOut)
	}
}

func TestSQLFunctions_forEveryFunction(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	c.must("registry", "set", "iris:1", "--max-batch-rows", "128")
	out := c.must("sql", "functions", "--model", "iris", "--service", "db.ml.IRIS_SVC", "--context-headers", "CURRENT_USER", "--on-batch-failure", "RETURN_NULL")
	for _, want := range []string{
		"CREATE OR REPLACE FUNCTION db.ml.IRIS_SVC_PREDICT(sepal_length FLOAT, sepal_width FLOAT, petal_length FLOAT, petal_width FLOAT)",
		"CREATE OR REPLACE FUNCTION db.ml.IRIS_SVC_PREDICT_PROBA(",
		"SERVICE = db.ml.IRIS_SVC",
		"ENDPOINT = inference",
		"MAX_BATCH_ROWS = 128",
		"CONTEXT_HEADERS = (CURRENT_USER)",
		"ON_BATCH_FAILURE = RETURN_NULL",
		"AS '/iris/predict-proba';",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("sql functions lacks %q:\n%s", want, out)
		}
	}
	if _, errOut, err := c.run("sql", "functions", "--model", "iris", "--service", "s", "--on-batch-failure", "RETRY"); err == nil || !strings.Contains(errOut, "ABORT or RETURN_NULL") {
		t.Errorf("a bad ON_BATCH_FAILURE: %v %s", err, errOut)
	}
}

func TestRegistryCLI_refusesAFileThatIsNotAModel(t *testing.T) {
	c := newCLI(t)
	bad := filepath.Join(t.TempDir(), "notes.onnx")
	os.WriteFile(bad, []byte("hello"), 0o644)
	_, errOut, err := c.run("registry", "log", "--name", "bad", "--version", "1", "--file", bad)
	if err == nil || !strings.Contains(errOut, "refusing "+bad+": not a model ONNX Runtime") {
		t.Errorf("log of a text file: %v %s", err, errOut)
	}
	if list := c.must("registry", "list"); strings.Contains(list, "bad") {
		t.Errorf("the refused model is listed:\n%s", list)
	}
}

func TestServe_theReadmeRequest(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris")
	s.waitReady()
	code, body := s.post("/predict", `{"data": [[0, 5.1, 3.5, 1.4, 0.2], [1, 6.7, 3.0, 5.2, 2.3]]}`)
	if code != 200 || body != `{"data":[[0,{"label":0}],[1,{"label":2}]]}` {
		t.Fatalf("POST /predict = %d %s", code, body)
	}
	code, body = s.post("/predict-proba", `{"data": [[4, [5.1, 3.5, 1.4, 0.2]], [2, {"SEPAL_LENGTH": 6.7, "sepal_width": 3.0, "petal_length": 5.2, "petal_width": 2.3}]]}`)
	if code != 200 {
		t.Fatalf("POST /predict-proba = %d %s", code, body)
	}
	rows := parseRows(t, body)
	if len(rows) != 2 || rows[0].Row != 4 || rows[1].Row != 2 {
		t.Fatalf("rows = %+v", rows)
	}
	p := rows[1].Values["probabilities"].([]any)
	if len(p) != 3 || p[2].(float64) < 0.9 {
		t.Errorf("virginica's probabilities = %v", p)
	}
	if err := s.stop(); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, s.logs)
	}
}

func TestServe_everyKindOfInputAndOutput(t *testing.T) {
	c := newCLI(t)
	for _, m := range []string{"strings", "vectors", "image", "types", "sequence"} {
		c.must("registry", "log", "--name", m, "--version", "1", "--file", testenv.Model(t, m))
	}
	tests := []struct {
		model, body, want string
	}{
		{"strings", `{"data": [[0, "RED", 2.5], [1, "Blue", 1], [2, "violet", 3]]}`,
			`{"data":[[0,{"normalized":"red","code":1,"score":2.5}],[1,{"normalized":"blue","code":3,"score":3}],[2,{"normalized":"violet","code":0,"score":0}]]}`},
		{"strings", `{"data": [[0, {"COLOR": "Green", "amount": 2}]]}`,
			`{"data":[[0,{"normalized":"green","code":2,"score":4}]]}`},
		{"vectors", `{"data": [[0, [3, 4, 0, 0, 0, 0, 0, 0], 2], [1, [0, 0, 0, 0, 0, 0, 0, 1], 0.5]]}`,
			`{"data":[[0,{"norm":5,"scaled":[6,8,0,0,0,0,0,0],"top":1}],[1,{"norm":1,"scaled":[0,0,0,0,0,0,0,0.5],"top":7}]]}`},
		{"vectors", `{"data": [[0, 3, 4, 0, 0, 0, 0, 0, 0, 1]]}`,
			`{"data":[[0,{"norm":5,"scaled":[3,4,0,0,0,0,0,0],"top":1}]]}`},
		{"image", `{"data": [[0, [[[1,2,3],[4,5,6],[7,8,9]], [[1,1,1],[1,1,1],[1,1,1]]]]]}`,
			`{"data":[[0,{"channel_max":[9,1],"grid":[[2,3,4],[5,6,7],[8,9,10]]}]]}`},
		{"image", `{"data": [[0, [1,2,3,4,5,6,7,8,9, 1,1,1,1,1,1,1,1,1]]]}`,
			`{"data":[[0,{"channel_max":[9,1],"grid":[[2,3,4],[5,6,7],[8,9,10]]}]]}`},
		{"types", `{"data": [[0, -7, 200, 0.25, true], [1, "2", 1, 1, false]]}`,
			`{"data":[[0,{"sum":193.25,"not_flag":false,"doubled":-14}],[1,{"sum":4,"not_flag":true,"doubled":4}]]}`},
		{"sequence", `{"data": [[0, [1, 0, 3]], [1, [0, 0, 0]]]}`,
			`{"data":[[0,{"count":2}],[1,{"count":0}]]}`},
	}
	services := map[string]*service{}
	for _, tt := range tests {
		s := services[tt.model]
		if s == nil {
			s = c.serve("--model", tt.model)
			s.waitReady()
			services[tt.model] = s
		}
		if code, body := s.post("/predict", tt.body); code != 200 || body != tt.want {
			t.Errorf("%s %s\n = %d %s\nwant %s", tt.model, tt.body, code, body, tt.want)
		}
	}
}

func TestServe_errorsNameTheRowAndColumn(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	c.must("registry", "log", "--name", "fragile", "--version", "1", "--file", testenv.Model(t, "fragile"))
	iris := c.serve("--model", "iris")
	fragile := c.serve("--model", "fragile")
	iris.waitReady()
	fragile.waitReady()
	tests := []struct {
		s          *service
		path, body string
		code       int
		want       string
	}{
		{iris, "/predict", `{"rows": []}`, 400, `Input data malformed: the body has no \"data\" key`},
		{iris, "/predict", `{"data": []}`, 400, `\"data\" holds no rows`},
		{iris, "/predict", `not json`, 400, "not valid JSON"},
		{iris, "/predict", `{"data": [[0, 1, 2, 3, 4], [1, 1, 2, 3]]}`, 400, "row 1: expected 4 arguments"},
		{iris, "/predict", `{"data": [[0, 1, 2, "x", 4]]}`, 400, `row 0, column \"petal_length\": expected FLOAT (float32), got string \"x\"`},
		{iris, "/predict", `{"data": [[0, {"sepal_length": 1, "petal": 2}]]}`, 400, `row 0, column \"petal\": unknown column`},
		{iris, "/classify", `{"data": [[0, 1, 2, 3, 4]]}`, 404, "unknown function /classify; this server serves /iris/predict, /iris/predict-proba, /predict, /predict-proba"},
		{fragile, "/predict", `{"data": [[0, [1, 2, 3]]]}`, 500, "Prediction failed: "},
	}
	for _, tt := range tests {
		code, body := tt.s.post(tt.path, tt.body)
		if code != tt.code || !strings.Contains(body, tt.want) || !strings.HasPrefix(body, `{"error":`) {
			t.Errorf("POST %s %s\n = %d %s\nwant %d containing %s", tt.path, tt.body, code, body, tt.code, tt.want)
		}
	}
	// A model failure is reported, and the process lives on.
	if code, _ := fragile.post("/predict", `{"data": [[0, [1, 2]]]}`); code != 200 {
		t.Errorf("after a model failure: %d", code)
	}
}

func TestServe_metricsPassPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is needed (Debian package prometheus; make deps installs it)")
	}
	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris")
	s.waitReady()
	s.post("/predict", `{"data": [[0, 5.1, 3.5, 1.4, 0.2]]}`)
	s.post("/predict", `{"data": []}`)
	code, metrics := s.get("/metrics")
	if code != 200 {
		t.Fatalf("/metrics = %d", code)
	}
	for _, want := range []string{
		`modelserve_requests_total{function="predict",model="iris",outcome="ok",protocol="gateway",version="1"} 1`,
		`modelserve_requests_total{function="predict",model="iris",outcome="bad_request",protocol="gateway",version="1"} 1`,
		`modelserve_rows_predicted_total{function="predict",model="iris",protocol="gateway",version="1"} 1`,
		`modelserve_workers_busy{model="iris",version="1"} 0`,
		`modelserve_ready 1`,
		`modelserve_request_duration_seconds_count{function="predict",model="iris",protocol="gateway",version="1"} 2`,
		`modelserve_inference_duration_seconds_count{model="iris",version="1"} 1`,
		`modelserve_batch_rows_count{model="iris",version="1"} 1`,
		`modelserve_queue_wait_seconds_count{model="iris",priority="normal",version="1"} 1`,
		`modelserve_queue_rows{model="iris",version="1"} 0`,
		`modelserve_inflight_bytes{model="iris",version="1"} 0`,
		`modelserve_admission_rejections_total{model="iris",priority="normal",reason="memory",version="1"} 0`,
		`modelserve_queue_wait_target_seconds{model="iris",version="1"}`,
		"modelserve_memory_budget_bytes",
		"process_resident_memory_bytes",
		"go_goroutines",
	} {
		// A whole line, or a whole name and labels: "} 1" must not
		// match "} 17".
		if !strings.Contains(metrics+"\n", want+"\n") && !strings.Contains(metrics, want+" ") {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(metrics)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

func TestServe_refusesACorruptedModel(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	path := filepath.Join(c.registry, "models", "iris", "1", "model.onnx")
	os.Chmod(path, 0o644)
	b, _ := os.ReadFile(path)
	b[len(b)/2] ^= 0x01
	os.WriteFile(path, b, 0o644)
	var manifest struct{ SHA256 string }
	json.Unmarshal([]byte(c.must("registry", "show", "iris:1", "--json")), &manifest)

	cmd := c.command("serve", "--model", "iris", "--host", "127.0.0.1", "--port", "0")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("serve started on a corrupted model:\n%s", out)
	}
	for _, want := range []string{path, "corrupt", manifest.SHA256, "sha256"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("the refusal does not mention %q:\n%s", want, out)
		}
	}
}

func TestServe_deleteIsRefusedWhileServed(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris:1")
	s.waitReady()
	if _, errOut, err := c.run("registry", "delete", "iris:1"); err == nil || !strings.Contains(errOut, "in use by a running service") {
		t.Errorf("delete while served: %v %s", err, errOut)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	c.must("registry", "delete", "iris:1")
}

func TestServe_cudaWithoutAGPUFailsAtStart(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	out, err := c.command("serve", "--model", "iris", "--device", "cuda", "--host", "127.0.0.1", "--port", "0").CombinedOutput()
	// This machine has no NVIDIA driver: the error names the missing piece.
	if err == nil || !strings.Contains(string(out), "--device cuda: cannot run on a GPU: no NVML: libnvidia-ml.so.1 is not installed") {
		t.Errorf("serve --device cuda on this machine: %v\n%s", err, out)
	}
}

func TestServe_batchSettingsComeFromTheRegistryThenFlags(t *testing.T) {
	c := newCLI(t)
	c.must("registry", "log", "--name", "vectors", "--version", "1", "--file", testenv.Model(t, "vectors"), "--max-batch-rows", "16")
	if out := c.must("registry", "set", "vectors:1", "--max-batch-delay", "3ms"); !strings.Contains(out, "max batch rows 16, max batch delay 3ms") {
		t.Errorf("registry set said %q", out)
	}
	if show := c.must("registry", "show", "vectors:1"); !regexp.MustCompile(`settings +max batch rows 16, max batch delay 3ms`).MatchString(show) {
		t.Errorf("registry show:\n%s", show)
	}
	// Re-logging with other settings is refused: settings change with set.
	if _, errOut, err := c.run("registry", "log", "--name", "vectors", "--version", "1", "--file", testenv.Model(t, "vectors")); err == nil || !strings.Contains(errOut, "registry set") {
		t.Errorf("re-log with other settings: %v %s", err, errOut)
	}
	s := c.serve("--model", "vectors")
	s.waitReady()
	if !s.logged("max_batch_rows=16 max_batch_delay=3ms") {
		t.Errorf("serve did not use the registry's settings:\n%s", s.logs)
	}
	s = c.serve("--model", "vectors", "--max-batch-rows", "4")
	s.waitReady()
	if !s.logged("max_batch_rows=4 max_batch_delay=3ms") {
		t.Errorf("the flag did not win over the registry:\n%s", s.logs)
	}
	// A request split across workers still answers every row in order.
	var rows []string
	for r := range 10 {
		rows = append(rows, fmt.Sprintf("[%d, [%d, 0, 0, 0, 0, 0, 0, 0], 1]", r, r))
	}
	code, body := s.post("/predict", `{"data": [`+strings.Join(rows, ",")+`]}`)
	got := parseRows(t, body)
	if code != 200 || len(got) != 10 {
		t.Fatalf("10 rows in pieces of 4 = %d %s", code, body)
	}
	for r, p := range got {
		if p.Row != int64(r) || p.Values["norm"].(float64) != float64(r) {
			t.Errorf("row %d came back as %+v", r, p)
		}
	}
}

func TestServe_settingsFromTheEnvironment(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	cmd := c.command("serve", "--model", "iris", "--host", "127.0.0.1", "--port", "0")
	cmd.Env = append(cmd.Env, "MODELSERVE_WORKERS=3", "MODELSERVE_DEVICE=cpu")
	var logs testenv.SyncBuffer
	cmd.Stderr = &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	deadline := time.Now().Add(30 * time.Second)
	for !strings.Contains(logs.String(), "msg=ready") {
		if time.Now().After(deadline) {
			t.Fatalf("not ready:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !strings.Contains(logs.String(), "device=cpu workers=3") {
		t.Errorf("MODELSERVE_WORKERS was not used:\n%s", logs.String())
	}
}

// loadResult is what a steady load saw: requests sent, failed, and the
// first failure.
type loadResult struct {
	sent, failed int64
	first        error
}

// steadyLoad sends from n goroutines, each as soon as its last request is
// answered, until the returned stop is called. send returns nil for a
// success.
func steadyLoad(n int, send func() error) (stop func() loadResult) {
	var sent, failed atomic.Int64
	var first atomic.Value
	done := make(chan struct{})
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				err := send()
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					first.CompareAndSwap(nil, err)
				}
			}
		}()
	}
	return func() loadResult {
		close(done)
		wg.Wait()
		r := loadResult{sent: sent.Load(), failed: failed.Load()}
		r.first, _ = first.Load().(error)
		return r
	}
}
