package server

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/workers"
)

type fixture struct {
	srv     *Server
	queue   *admission.Queue
	metrics *prometheus.Registry
	name    string // the model served
}

// newFixture serves a generated model with the given functions over a real
// one-worker pool; the server is not ready until ready() is called.
func newFixture(t *testing.T, name string, fns []model.Function, cfg admission.Config) (fixture, func()) {
	t.Helper()
	return newFixtureWith(t, name, fns, fixtureOptions{admission: cfg})
}

type fixtureOptions struct {
	admission admission.Config
	// server adjusts the server's configuration.
	server  func(*Config)
	workers int
	log     io.Writer
	// wrap puts something between the queue and the real pool (a fault
	// to inject).
	wrap func(admission.Runner) admission.Runner
}

func newFixtureWith(t *testing.T, name string, fns []model.Function, o fixtureOptions) (fixture, func()) {
	t.Helper()
	rt := testenv.Runtime(t)
	b, err := os.ReadFile(testenv.Model(t, name))
	if err != nil {
		t.Fatal(err)
	}
	info, err := rt.Inspect(b)
	if err != nil {
		t.Fatal(err)
	}
	sig := model.Signature{Inputs: info.Inputs, Outputs: info.Outputs, Functions: fns}
	metrics := prometheus.NewRegistry()
	log := slog.New(slog.DiscardHandler)
	if o.log != nil {
		log = slog.New(slog.NewTextHandler(o.log, nil))
	}
	cfg := Config{Models: []Model{{Name: name, Signature: sig}}, Log: log, Gatherer: metrics, Registerer: metrics, MaxBodyBytes: 1 << 20}
	if o.server != nil {
		o.server(&cfg)
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pool, err := workers.Start(context.Background(), rt, workers.Model{Path: testenv.Model(t, name), Inputs: sig.Inputs, Outputs: sig.FetchedOutputs()},
		workers.Config{Device: workers.CPU, Workers: max(o.workers, 1)}, slog.New(slog.DiscardHandler), metrics)
	if err != nil {
		t.Fatal(err)
	}
	var runner admission.Runner = pool
	if o.wrap != nil {
		runner = o.wrap(pool)
	}
	// A test that raises the batch size wants batches that large: its
	// wait target, unless set, does not cut them.
	if o.admission.MaxBatchRows >= occupyRows && o.admission.MaxQueueWait == 0 {
		o.admission.MaxQueueWait = time.Minute
	}
	// As serve does: the call cost warm-up measured.
	o.admission.CallFixedCost, o.admission.CallPerRowCost = pool.Cost().Fixed, pool.Cost().PerRow
	q, err := admission.New(runner, o.admission, metrics)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		q.Close()
		pool.Close(context.Background())
	})
	f := fixture{srv: srv, queue: q, metrics: metrics, name: name}
	t.Cleanup(func() { srv.Shutdown(context.Background()) })
	return f, func() { srv.SetAdmitter(name, q) }
}

var irisFunctions = []model.Function{{Name: "predict", Outputs: []string{"label"}}, {Name: "predict_proba", Outputs: []string{"probabilities"}}}

func (f fixture) do(t *testing.T, method, path, body string) (int, http.Header, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	resp, err := f.srv.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

const irisRows = `{"data": [[0, 5.1, 3.5, 1.4, 0.2], [1, 6.7, 3.0, 5.2, 2.3]]}`

func TestServer_notReadyUntilEveryWorkerHasLoaded(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{})
	for _, path := range []string{"/healthcheck", "/health"} {
		if code, _, body := f.do(t, "GET", path, ""); code != 503 || body != `{"status":"not ready"}` {
			t.Errorf("GET %s before load = %d %s", path, code, body)
		}
	}
	if code, h, _ := f.do(t, "POST", "/predict", irisRows); code != 503 || h.Get("Retry-After") == "" {
		t.Errorf("POST /predict before load = %d, Retry-After %q", code, h.Get("Retry-After"))
	}
	ready()
	for _, path := range []string{"/healthcheck", "/health"} {
		if code, _, body := f.do(t, "GET", path, ""); code != 200 || body != `{"status":"ready"}` {
			t.Errorf("GET %s after load = %d %s", path, code, body)
		}
	}
	if code, _, body := f.do(t, "POST", "/predict", irisRows); code != 200 {
		t.Errorf("POST /predict after load = %d %s", code, body)
	}
	if got := testutil.ToFloat64(f.srv.ready); got != 1 {
		t.Errorf("modelserve_ready = %v", got)
	}
}

func TestServer_eachFunctionHasItsRoute(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{})
	ready()
	tests := []struct {
		method, path string
		code         int
		body         string
	}{
		{"POST", "/predict", 200, `{"data":[[0,{"label":0}],[1,{"label":2}]]}`},
		{"POST", "/predict-proba", 200, `"probabilities":[`},
		{"POST", "/predict_proba", 404, "unknown function /predict_proba; this server serves /iris/predict, /iris/predict-proba, /predict, /predict-proba"},
		{"POST", "/iris/predict-proba", 200, `"probabilities":[`},
		{"POST", "/iris/predict", 200, `{"data":[[0,{"label":0}],[1,{"label":2}]]}`},
		{"GET", "/health/iris", 200, `{"status":"ready"}`},
		{"GET", "/health/dlrm", 404, `no model \"dlrm\" is served here`},
		{"GET", "/predict", 405, "takes POST"},
		{"GET", "/nothing", 404, "not found"},
	}
	for _, tt := range tests {
		code, h, body := f.do(t, tt.method, tt.path, irisRows)
		if code != tt.code || !strings.Contains(body, tt.body) {
			t.Errorf("%s %s = %d %s, want %d containing %s", tt.method, tt.path, code, body, tt.code, tt.body)
		}
		if ct := h.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s %s content type %q", tt.method, tt.path, ct)
		}
	}
}

func TestServer_defaultFunctionWithoutPredict(t *testing.T) {
	f, ready := newFixture(t, "iris", []model.Function{{Name: "classify", Outputs: []string{"label", "probabilities"}}}, admission.Config{})
	ready()
	for _, path := range []string{"/predict", "/classify"} {
		if code, _, body := f.do(t, "POST", path, irisRows); code != 200 || !strings.Contains(body, `"label":2,"probabilities":[`) {
			t.Errorf("POST %s = %d %s", path, code, body)
		}
	}
}

func TestServer_modelFailureIsReportedWhole(t *testing.T) {
	f, ready := newFixture(t, "fragile", []model.Function{{Name: "predict", Outputs: []string{"pairs"}}}, admission.Config{})
	ready()
	for _, body := range []string{`{"data": [[0, [1, 2, 3]]]}`, `{"data": [[0, [1, 2, 3, 4]]]}`} {
		code, _, got := f.do(t, "POST", "/predict", body)
		if code != 500 || !strings.HasPrefix(got, `{"error":"Prediction failed: `) || strings.Contains(got, `"data"`) {
			t.Errorf("model failure for %s = %d %s", body, code, got)
		}
	}
	if code, _, _ := f.do(t, "POST", "/predict", `{"data": [[0, [1, 2]], [1, [3, 4]]]}`); code != 200 {
		t.Errorf("after failures the model still serves: %d", code)
	}
}

var encoderFunctions = []model.Function{{Name: "predict", Outputs: []string{"embedding"}}}

// occupyRows keep the encoder's one worker busy for seconds.
const occupyRows = 4096

// occupy runs a long batch on the fixture's only worker until the test
// ends (or release is called, which cancels it).
func (f fixture) occupy(t *testing.T) (release func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	ticket, err := f.queue.Admit(0)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer ticket.Done()
		ticket.Run(ctx, []model.Tensor{{DType: model.Int64, Shape: model.Shape{occupyRows, 32}, Data: make([]int64, occupyRows*32)}})
	}()
	waitForGauge(t, f.metrics, "modelserve_workers_busy", 1)
	release = func() {
		cancel()
		<-done
	}
	t.Cleanup(release)
	return release
}

func encoderRow(row int) string {
	return fmt.Sprintf(`[%d, [%s1]]`, row, strings.Repeat("1,", 31))
}

func TestServer_overloadAnswers429AtOnce(t *testing.T) {
	f, ready := newFixture(t, "encoder", encoderFunctions, admission.Config{MaxBatchRows: occupyRows, MaxQueuedRequests: 1})
	ready()
	f.occupy(t)
	go f.srv.Test(httptest.NewRequest("POST", "/predict", strings.NewReader(`{"data": [`+encoderRow(0)+`]}`))) // waits in the queue
	waitForGauge(t, f.metrics, "modelserve_queue_requests", 1)

	start := time.Now()
	code, h, body := f.do(t, "POST", "/predict", `{"data": [`+encoderRow(0)+`]}`)
	if code != 429 || h.Get("Retry-After") == "" || body != `{"error":"Too many requests"}` || h.Get(ReasonHeader) != "queue_full" {
		t.Errorf("overloaded = %d %q %q %s", code, h.Get("Retry-After"), h.Get(ReasonHeader), body)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the 429 took %v", d)
	}
}

func TestServer_admissionComesBeforeParsing(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{MemoryBudget: 4096})
	ready()
	held, err := f.queue.Admit(3000)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Done()
	// Malformed, but too big for what is left of the budget: refused
	// before parsing, so the answer is 429, not 400.
	code, h, _ := f.do(t, "POST", "/predict", strings.Repeat("x", 2000))
	if code != 429 || h.Get(ReasonHeader) != "memory" {
		t.Errorf("a body over the free budget = %d (%s), want 429 memory", code, h.Get(ReasonHeader))
	}
	code, _, body := f.do(t, "POST", "/predict", strings.Repeat("x", 5000))
	if code != 413 || !strings.Contains(body, "more than the whole memory budget") {
		t.Errorf("a body over the whole budget = %d %s, want 413", code, body)
	}
}

// dial serves f on a loopback socket and connects to it.
func (f fixture) dial(t *testing.T) net.Conn {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(serveOver(t, f), "http://"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// A request refused from its headers leaves its body unread; the server
// reads it through and throws it away, so the connection carries the
// next request. Chunked bodies too.
func TestServer_aBodyRefusedFromItsHeadersKeepsTheConnection(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{MemoryBudget: 56 << 10})
	ready()
	conn := f.dial(t)
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(conn)
	sized := func(body string) string {
		return fmt.Sprintf("POST /predict HTTP/1.1\r\nHost: t\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}
	chunked := func(header, body string) string {
		return fmt.Sprintf("POST /predict HTTP/1.1\r\nHost: t\r\n%sTransfer-Encoding: chunked\r\n\r\n%x\r\n%s\r\n0\r\n\r\n", header, len(body), body)
	}
	big := `{"data": [` + strings.Repeat(" ", 100<<10) + `]}`
	steps := []struct {
		name, req string
		code      int
	}{
		{"a 100 KiB body over the memory budget", sized(big), 413},
		{"then a small request on the same connection", sized(irisRows), 200},
		{"a chunked body refused from its headers", chunked("X-Priority: urgent\r\n", big), 400},
		{"another small one", sized(irisRows), 200},
		{"a chunked body over the memory budget once read", chunked("", big), 413},
		{"and a last small one", sized(irisRows), 200},
	}
	for _, st := range steps {
		if _, err := io.WriteString(conn, st.req); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != st.code || resp.Close {
			t.Errorf("%s = %d %s (close %v) %s, want %d on a kept connection", st.name, resp.StatusCode, resp.Header.Get(ReasonHeader), resp.Close, body, st.code)
		}
	}
}

func TestServer_deadlines(t *testing.T) {
	f, ready := newFixture(t, "encoder", encoderFunctions, admission.Config{MaxBatchRows: occupyRows})
	ready()
	f.occupy(t)
	body := `{"data": [` + encoderRow(0) + `]}`
	tests := []struct {
		header string
		code   int
		want   string
	}{
		{"50ms", 504, "deadline passed"},
		{"0.05", 504, "deadline passed"},
		{"soon", 400, "X-Request-Timeout"},
		{"-1s", 400, "not a positive time"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("POST", "/predict", strings.NewReader(body))
		req.Header.Set(TimeoutHeader, tt.header)
		resp, err := f.srv.Test(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tt.code || !strings.Contains(string(got), tt.want) {
			t.Errorf("%s: %s = %d %s", TimeoutHeader, tt.header, resp.StatusCode, got)
		}
	}
}

func TestServer_aClientThatHangsUpCancelsItsWork(t *testing.T) {
	f, ready := newFixture(t, "encoder", encoderFunctions, admission.Config{MaxBatchRows: occupyRows})
	ready()
	conn := f.dial(t)
	f.occupy(t)
	body := `{"data": [` + encoderRow(0) + `]}`
	fmt.Fprintf(conn, "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	waitForGauge(t, f.metrics, "modelserve_queue_requests", 1)
	conn.Close()
	// The queued work goes without ever running, though the worker is
	// still busy with the long batch.
	waitForGauge(t, f.metrics, "modelserve_queue_requests", 0)
	if got := counterValue(t, f.metrics, "modelserve_admission_rejections_total", "canceled"); got != 1 {
		t.Errorf("canceled = %v", got)
	}
	// The handler counts its answer once it sees the hang-up, which may
	// be a moment after the queue dropped the work.
	deadline := time.Now().Add(10 * time.Second)
	for counterValue(t, f.metrics, "modelserve_requests_total", "unavailable") != 1 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if got := counterValue(t, f.metrics, "modelserve_requests_total", "unavailable"); got != 1 {
		t.Errorf("requests answered unavailable = %v", got)
	}
}

// counterValue reads the counter of a family whose labels include value.
func counterValue(t *testing.T, reg *prometheus.Registry, name, value string) float64 {
	t.Helper()
	families, _ := reg.Gather()
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetValue() == value {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

func waitForGauge(t *testing.T, reg *prometheus.Registry, name string, want float64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		families, _ := reg.Gather()
		for _, fam := range families {
			if fam.GetName() == name && fam.GetMetric()[0].GetGauge().GetValue() == want {
				return
			}
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("%s never reached %v", name, want)
}

func TestServer_oversizedBodyIs413BeforeItIsRead(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{})
	ready()
	// Over a real socket: the limit applies to Content-Length, so the
	// server answers after the first few kilobytes (the handler runs once
	// 8 KiB of a body are in), long before the 2 MiB are sent.
	conn := f.dial(t)
	fmt.Fprintf(conn, "POST /predict HTTP/1.1\r\nHost: test\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n", 2<<20)
	conn.Write(bytes.Repeat([]byte(" "), 16<<10))
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != 413 || !strings.Contains(string(body), "larger than 1048576 bytes") {
		t.Errorf("oversized body = %d %s", resp.StatusCode, body)
	}
}

func TestServer_metricsCountRequestsAndRows(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{})
	ready()
	f.do(t, "POST", "/predict", irisRows)
	f.do(t, "POST", "/predict", `{"data": []}`)
	f.do(t, "POST", "/predict-proba", irisRows)
	checks := []struct {
		c    prometheus.Collector
		want float64
	}{
		{f.srv.requests.WithLabelValues("iris", "", "predict", "gateway", "ok"), 1},
		{f.srv.requests.WithLabelValues("iris", "", "predict", "gateway", "bad_request"), 1},
		{f.srv.requests.WithLabelValues("iris", "", "predict_proba", "gateway", "ok"), 1},
		{f.srv.rows.WithLabelValues("iris", "", "predict", "gateway"), 2},
	}
	for i, c := range checks {
		if got := testutil.ToFloat64(c.c); got != c.want {
			t.Errorf("check %d = %v, want %v", i, got, c.want)
		}
	}
	code, _, body := f.do(t, "GET", "/metrics", "")
	if code != 200 || !strings.Contains(body, "modelserve_request_duration_seconds_bucket") {
		t.Errorf("/metrics = %d", code)
	}
	var parsed map[string]any
	if json.Unmarshal([]byte(body), &parsed) == nil {
		t.Error("/metrics should be the text exposition, not JSON")
	}
}

// TestServer_stagesTimeEachComputedRequestOnce: every computed request is
// timed once in each stage (decode, queue, execute, encode), a gateway
// batch answered again to a retry is not timed again, and a request that
// fails to decode is not timed at all.
func TestServer_stagesTimeEachComputedRequestOnce(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{})
	ready()
	f.do(t, "POST", "/predict", irisRows)
	for range 2 { // computed, then replayed
		if code, _, body := f.send(t, gatewayRequest("POST", "/predict", "q1", "b1", irisRows)); code != 200 {
			t.Fatalf("gateway batch = %d %s", code, body)
		}
	}
	f.do(t, "POST", "/predict", `{"data": [[0, "x"]]}`)
	if code, _, body := f.do(t, "POST", "/v2/models/iris/infer", `{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [5.1, 3.5, 1.4, 0.2]}]}`); code != 200 {
		t.Fatalf("infer = %d %s", code, body)
	}
	for _, tt := range []struct {
		function, protocol string
		want               uint64
	}{{"predict", "gateway", 2}, {"infer", "oip", 1}} {
		for _, stage := range []string{"decode", "queue", "execute", "encode"} {
			h := f.srv.stages.WithLabelValues("iris", "", tt.function, tt.protocol, stage).(prometheus.Histogram)
			m := &dto.Metric{}
			if err := h.Write(m); err != nil {
				t.Fatal(err)
			}
			if n := m.GetHistogram().GetSampleCount(); n != tt.want {
				t.Errorf("%s %s: stage %s timed %d times, want %d", tt.protocol, tt.function, stage, n, tt.want)
			}
			if stage == "execute" && m.GetHistogram().GetSampleSum() <= 0 {
				t.Errorf("%s: execution took no time: %v", tt.protocol, m.GetHistogram().GetSampleSum())
			}
		}
	}
}

// TestServer_stagesTimeAnAsyncBatchOnce: a gateway batch answered 202
// and then polled is timed once, when its computation ends.
func TestServer_stagesTimeAnAsyncBatchOnce(t *testing.T) {
	f, ready := newFixtureWith(t, "iris", irisFunctions, fixtureOptions{server: func(c *Config) { c.Async.Always = true }})
	ready()
	if code, _, body := f.send(t, gatewayRequest("POST", "/predict", "q1", "b1", irisRows)); code != 202 {
		t.Fatalf("async batch = %d %s", code, body)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		code, _, body := f.send(t, gatewayRequest("GET", "/predict", "q1", "b1", ""))
		if code == 200 {
			break
		}
		if code != 202 || time.Now().After(deadline) {
			t.Fatalf("poll = %d %s", code, body)
		}
		time.Sleep(10 * time.Millisecond)
	}
	f.send(t, gatewayRequest("GET", "/predict", "q1", "b1", "")) // polled again
	h := f.srv.stages.WithLabelValues("iris", "", "predict", "gateway", "execute").(prometheus.Histogram)
	m := &dto.Metric{}
	if err := h.Write(m); err != nil {
		t.Fatal(err)
	}
	if n := m.GetHistogram().GetSampleCount(); n != 1 {
		t.Errorf("the async batch was timed %d times, want once", n)
	}
}

// TestDiscard: a refused body is read to its end whatever the reads
// bring, and no further than just past the longest body.
func TestDiscard(t *testing.T) {
	const limit = 3*discardChunk + 5
	failed := errors.New("the connection broke")
	for _, tc := range []struct {
		name    string
		r       io.Reader
		want    int64
		wantErr error
	}{
		{"empty", strings.NewReader(""), 0, nil},
		{"under a chunk", bytes.NewReader(make([]byte, 1000)), 1000, nil},
		{"several chunks", bytes.NewReader(make([]byte, 2*discardChunk+17)), 2*discardChunk + 17, nil},
		{"a byte at a time", iotest.OneByteReader(bytes.NewReader(make([]byte, 3000))), 3000, nil},
		{"data with its end", iotest.DataErrReader(bytes.NewReader(make([]byte, 3000))), 3000, nil},
		{"exactly the longest body", bytes.NewReader(make([]byte, limit)), limit, nil},
		{"longer: read one byte past", bytes.NewReader(make([]byte, 5*discardChunk)), limit + 1, nil},
		{"a read that fails", io.MultiReader(bytes.NewReader(make([]byte, 100)), iotest.ErrReader(failed)), 100, failed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &Server{cfg: Config{MaxBodyBytes: limit}}
			n, err := s.discard(tc.r)
			if n != tc.want || !errors.Is(err, tc.wantErr) {
				t.Errorf("discard = %d, %v; want %d, %v", n, err, tc.want, tc.wantErr)
			}
		})
	}
}
