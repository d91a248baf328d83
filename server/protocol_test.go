package server

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/md5"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/valyala/fasthttp"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
)

// gatewayRequest is a POST or GET as the SQL gateway sends it.
func gatewayRequest(method, path, queryID, batchID, body string) *http.Request {
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	req.Header.Set("sf-external-function-format", "json")
	req.Header.Set("sf-external-function-format-version", "1.0")
	req.Header.Set("sf-external-function-current-query-id", queryID)
	req.Header.Set("sf-external-function-query-batch-id", batchID)
	req.Header.Set("sf-external-function-name", "SVC_PREDICT")
	req.Header.Set("sf-context-current-user", "ANALYST")
	return req
}

func (f fixture) send(t *testing.T, req *http.Request) (int, http.Header, []byte) {
	t.Helper()
	resp, err := f.srv.Test(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b
}

// counter reads a metric's value (summed over its series) from reg; a
// histogram reads as its count.
func counter(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	total := 0.0
	for _, fam := range families {
		if fam.GetName() != name {
			continue
		}
		for _, m := range fam.GetMetric() {
			switch {
			case m.Counter != nil:
				total += m.GetCounter().GetValue()
			case m.Gauge != nil:
				total += m.GetGauge().GetValue()
			case m.Histogram != nil:
				total += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return total
}

// runs is how many ONNX Runtime calls have run.
func runs(t *testing.T, f fixture) float64 {
	return counter(t, f.metrics, "modelserve_inference_duration_seconds")
}

func encoderRows(n int) string {
	rows := make([]string, n)
	for i := range rows {
		rows[i] = encoderRow(i)
	}
	return `{"data": [` + strings.Join(rows, ",") + `]}`
}

func TestReadGateway_prefersBase64(t *testing.T) {
	var h fasthttp.RequestHeader
	h.Set("sf-external-function-current-query-id", "q-1")
	h.Set("sf-external-function-query-batch-id", "b-7")
	h.Set("sf-external-function-name", "plain")
	h.Set("sf-external-function-name-base64", base64.StdEncoding.EncodeToString([]byte(`"My Func"`)))
	h.Set("SF-CONTEXT-CURRENT-USER", "ann")
	h.Set("sf-context-current-role-base64", base64.StdEncoding.EncodeToString([]byte("ANALYST")))
	h.Set("x-other", "ignored")
	g := readGateway(&h)
	if g.QueryID != "q-1" || g.BatchID != "b-7" || g.Name != `"My Func"` {
		t.Errorf("gateway = %+v", g)
	}
	if g.Context["current-user"] != "ann" || g.Context["current-role"] != "ANALYST" || len(g.Context) != 2 {
		t.Errorf("context = %v", g.Context)
	}
	var none fasthttp.RequestHeader
	if readGateway(&none).present() {
		t.Error("a request without gateway headers reads as the gateway's")
	}
}

func TestGateway_batchIDsAreLoggedNeverLabelled(t *testing.T) {
	var logs testenv.SyncBuffer
	f, ready := newFixtureWith(t, "iris", irisFunctions, fixtureOptions{log: &logs})
	ready()
	if code, _, _ := f.send(t, gatewayRequest("POST", "/predict", "query-42", "batch-9", irisRows)); code != 200 {
		t.Fatalf("status %d", code)
	}
	if !strings.Contains(logs.String(), "query_id=query-42 batch_id=batch-9") {
		t.Errorf("the batch is not logged with its ids:\n%s", logs.String())
	}
	_, _, metrics := f.send(t, httptest.NewRequest("GET", "/metrics", nil))
	if bytes.Contains(metrics, []byte("query-42")) || bytes.Contains(metrics, []byte("batch-9")) {
		t.Error("a query or batch id reached the metrics")
	}
}

func TestGateway_unknownFormatIsRefused(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{})
	ready()
	req := gatewayRequest("POST", "/predict", "q", "b", irisRows)
	req.Header.Set("sf-external-function-format", "avro")
	if code, _, body := f.send(t, req); code != 400 || !bytes.Contains(body, []byte("speaks json")) {
		t.Errorf("format avro = %d %s", code, body)
	}
}

func TestGateway_aRetryWhileRunningJoinsAndIsComputedOnce(t *testing.T) {
	f, ready := newFixture(t, "encoder", encoderFunctions, admission.Config{MaxBatchRows: 4096})
	ready()
	body := encoderRows(400) // about a second on one worker
	before := runs(t, f)
	var wg sync.WaitGroup
	answers := make([][]byte, 3)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i > 0 {
				waitForGauge(t, f.metrics, "modelserve_workers_busy", 1)
			}
			code, _, b := f.send(t, gatewayRequest("POST", "/predict", "q", "b-1", body))
			if code != 200 {
				t.Errorf("attempt %d: %d %.200s", i, code, b)
			}
			answers[i] = b
		}()
	}
	wg.Wait()
	if got := runs(t, f) - before; got != 1 {
		t.Errorf("%v ONNX Runtime runs for one batch sent three times", got)
	}
	if !bytes.Equal(answers[0], answers[1]) || !bytes.Equal(answers[0], answers[2]) {
		t.Error("the attempts got different answers")
	}
	if got := counter(t, f.metrics, "modelserve_batch_retries_total"); got != 2 {
		t.Errorf("retries counted = %v", got)
	}
}

func TestGateway_aRetryAfterItFinishedGetsTheSameAnswer(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{})
	ready()
	code, _, first := f.send(t, gatewayRequest("POST", "/predict-proba", "q", "b-2", irisRows))
	if code != 200 {
		t.Fatalf("first: %d %s", code, first)
	}
	before := runs(t, f)
	code, _, again := f.send(t, gatewayRequest("POST", "/predict-proba", "q", "b-2", irisRows))
	if code != 200 || !bytes.Equal(first, again) {
		t.Errorf("replay = %d %.200s, want %.200s", code, again, first)
	}
	if runs(t, f) != before {
		t.Error("the replay ran the model again")
	}
	// The same batch id on another function, or another query, is another
	// batch.
	if code, _, b := f.send(t, gatewayRequest("POST", "/predict", "q", "b-2", irisRows)); code != 200 || bytes.Equal(b, first) {
		t.Errorf("another function with the same batch id = %d %s", code, b)
	}
	// A caller's mistake is kept too: the retry gets the same 400 at once.
	for range 2 {
		if code, _, b := f.send(t, gatewayRequest("POST", "/predict", "q", "b-bad", `{"data": [[0, 1]]}`)); code != 400 {
			t.Errorf("bad batch = %d %s", code, b)
		}
	}
	if got := counter(t, f.metrics, "modelserve_batch_retries_total"); got != 2 {
		t.Errorf("retries counted = %v", got)
	}
}

func TestGateway_aBatchIDWithAnotherBodyIsAConflict(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{})
	ready()
	f.send(t, gatewayRequest("POST", "/predict", "q", "b-3", irisRows))
	code, _, body := f.send(t, gatewayRequest("POST", "/predict", "q", "b-3", `{"data": [[0, 1, 2, 3, 4]]}`))
	if code != 409 || !bytes.Contains(body, []byte("different body")) {
		t.Errorf("reused batch id = %d %s", code, body)
	}
}

func TestGateway_asyncBatchesAre202UntilDone(t *testing.T) {
	tests := []struct {
		name  string
		async Async
	}{
		{"forced", Async{Always: true}},
		// The encoder's warm-up cost puts 400 rows well past 50ms.
		{"expected to take long", Async{After: 50 * time.Millisecond}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f, ready := newFixtureWith(t, "encoder", encoderFunctions, fixtureOptions{
				admission: admission.Config{MaxBatchRows: 4096},
				server:    func(c *Config) { c.Async = tt.async },
			})
			ready()
			body := encoderRows(400)
			before := runs(t, f)
			code, _, b := f.send(t, gatewayRequest("POST", "/predict", "q", "b-4", body))
			if code != 202 {
				t.Fatalf("POST = %d %.200s, want 202", code, b)
			}
			if code, _, b := f.send(t, gatewayRequest("GET", "/predict", "q", "b-4", "")); code != 202 {
				t.Errorf("GET while running = %d %.200s, want 202", code, b)
			}
			// A POST retry of a running async batch is also told to poll.
			if code, _, _ := f.send(t, gatewayRequest("POST", "/predict", "q", "b-4", body)); code != 202 {
				t.Errorf("POST retry while running = %d", code)
			}
			deadline := time.Now().Add(30 * time.Second)
			for {
				code, _, b = f.send(t, gatewayRequest("GET", "/predict", "q", "b-4", ""))
				if code != 202 || time.Now().After(deadline) {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if code != 200 || len(parseData(t, b)) != 400 {
				t.Fatalf("GET when done = %d", code)
			}
			if got := runs(t, f) - before; got != 1 {
				t.Errorf("%v runs for one async batch", got)
			}
			if code, _, _ := f.send(t, gatewayRequest("GET", "/predict", "q", "unknown", "")); code != 404 {
				t.Errorf("GET of an unknown batch = %d", code)
			}
		})
	}
}

// parseData reads the rows of an answer.
func parseData(t *testing.T, body []byte) [][]any {
	t.Helper()
	var v struct{ Data [][]any }
	if err := json.Unmarshal(body, &v); err != nil {
		t.Fatalf("not an answer: %v\n%s", err, body)
	}
	return v.Data
}

func TestGateway_answersAreKeptForTheirTimeThenDropped(t *testing.T) {
	f, ready := newFixtureWith(t, "iris", irisFunctions, fixtureOptions{
		server: func(c *Config) { c.ResultTTL = 100 * time.Millisecond },
	})
	ready()
	f.send(t, gatewayRequest("POST", "/predict", "q", "b-5", irisRows))
	if code, _, _ := f.send(t, gatewayRequest("GET", "/predict", "q", "b-5", "")); code != 200 {
		t.Errorf("GET within the time = %d", code)
	}
	if got := counter(t, f.metrics, "modelserve_inflight_bytes"); got <= 0 {
		t.Errorf("a kept answer holds %v bytes of the budget", got)
	}
	time.Sleep(150 * time.Millisecond)
	if code, _, _ := f.send(t, gatewayRequest("GET", "/predict", "q", "b-5", "")); code != 404 {
		t.Errorf("GET after the time = %d", code)
	}
	if got := counter(t, f.metrics, "modelserve_inflight_bytes"); got != 0 {
		t.Errorf("an expired answer still holds %v bytes", got)
	}
	if got := counter(t, f.metrics, "modelserve_batch_results_evicted_total"); got != 1 {
		t.Errorf("evictions = %v", got)
	}
}

func TestGateway_oldestAnswersGoFirstWhenMemoryIsShort(t *testing.T) {
	f, ready := newFixtureWith(t, "iris", irisFunctions, fixtureOptions{
		server: func(c *Config) { c.ResultBytes = 100 }, // about two answers
	})
	ready()
	for _, id := range []string{"b-1", "b-2", "b-3"} {
		f.send(t, gatewayRequest("POST", "/predict", "q", id, irisRows))
	}
	if code, _, _ := f.send(t, gatewayRequest("GET", "/predict", "q", "b-1", "")); code != 404 {
		t.Errorf("the oldest answer = %d, want evicted", code)
	}
	if code, _, _ := f.send(t, gatewayRequest("GET", "/predict", "q", "b-3", "")); code != 200 {
		t.Errorf("the newest answer = %d, want kept", code)
	}
	if got := counter(t, f.metrics, "modelserve_batch_results_evicted_total"); got < 1 {
		t.Errorf("evictions = %v", got)
	}
}

func gzipped(t testing.TB, s string) []byte {
	var b bytes.Buffer
	w := gzip.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

// TestCompression_binaryTensorsArePlain: a binary tensor answer is sent
// as it is, whatever the caller accepts; its JSON twin is compressed.
func TestCompression_binaryTensorsArePlain(t *testing.T) {
	f, ready := newFixtureWith(t, "encoder", encoderFunctions, fixtureOptions{})
	ready()
	ids := make([]byte, 8*32*8)
	for _, binary := range []bool{true, false} {
		header := `{"inputs": [{"name": "input_ids", "shape": [8, 32], "datatype": "INT64", "parameters": {"binary_data_size": 2048}}],` +
			`"parameters": {"binary_data_output": ` + strconv.FormatBool(binary) + `}}`
		req := httptest.NewRequest("POST", "/v2/models/encoder/infer", bytes.NewReader(append([]byte(header), ids...)))
		req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(header)))
		req.Header.Set("Accept-Encoding", "gzip")
		code, h, got := f.send(t, req)
		if code != 200 || len(got) < 1024 {
			t.Fatalf("status %d, %d bytes: %.200s", code, len(got), got)
		}
		if enc := h.Get("Content-Encoding"); (enc == "gzip") == binary {
			t.Errorf("binary output %v: answered with Content-Encoding %q", binary, enc)
		}
	}
}

func TestCompression_bothWays(t *testing.T) {
	f, ready := newFixtureWith(t, "encoder", encoderFunctions, fixtureOptions{
		server: func(c *Config) { c.ContentMD5 = true },
	})
	ready()
	body := encoderRows(8)
	var deflated bytes.Buffer
	zw := zlib.NewWriter(&deflated)
	zw.Write([]byte(body))
	zw.Close()
	tests := []struct {
		name, encoding string
		payload        []byte
		accept         string
	}{
		{"gzip in, gzip out", "gzip", gzipped(t, body), "gzip"},
		{"deflate in, deflate out", "deflate", deflated.Bytes(), "deflate;q=1, gzip;q=0.5"},
		{"plain in, plain out", "", []byte(body), ""},
	}
	var plain []byte
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("POST", "/predict", bytes.NewReader(tt.payload))
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			req.Header.Set("Accept-Encoding", tt.accept)
			code, h, got := f.send(t, req)
			if code != 200 {
				t.Fatalf("status %d %.200s", code, got)
			}
			sum := md5.Sum(got)
			if h.Get("Content-MD5") != base64.StdEncoding.EncodeToString(sum[:]) {
				t.Errorf("Content-MD5 %q does not match the body sent", h.Get("Content-MD5"))
			}
			var r io.Reader = bytes.NewReader(got)
			switch enc := h.Get("Content-Encoding"); enc {
			case "gzip":
				r, _ = gzip.NewReader(r)
			case "deflate":
				r, _ = zlib.NewReader(r)
			case "":
			default:
				t.Fatalf("answered with %q", enc)
			}
			if h.Get("Content-Encoding") != tt.accept && !strings.HasPrefix(tt.accept, h.Get("Content-Encoding")) {
				t.Errorf("Accept-Encoding %q answered with %q", tt.accept, h.Get("Content-Encoding"))
			}
			decoded, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			if plain == nil {
				plain = decoded
			}
			if !bytes.Equal(decoded, plain) || len(parseData(t, decoded)) != 8 {
				t.Errorf("the answer differs once decoded")
			}
		})
	}
}

func TestCompression_badBodies(t *testing.T) {
	f, ready := newFixture(t, "iris", irisFunctions, admission.Config{})
	ready()
	bomb := gzipped(t, `{"data": [`+strings.Repeat(" ", 2<<20)+`]}`) // 2 MiB of spaces, 1 MiB allowed
	tests := []struct {
		encoding string
		body     []byte
		code     int
		want     string
	}{
		{"gzip", []byte("not gzip"), 400, "not valid gzip"},
		{"br", []byte(irisRows), 415, "unsupported content encoding"},
		{"gzip", bomb, 413, "declares 2097164 bytes uncompressed, more than 1048576"},
		// A second member after the bomb: the trailer then tells only of
		// the last one.
		{"gzip", append(bomb, gzipped(t, " ")...), 413, "decompresses to more than 1048576 bytes"},
		{"deflate", deflated(t, `{"data": [`+strings.Repeat(" ", 2<<20)+`]}`), 413, "decompresses to more than 1048576 bytes"},
		// A trailer that lies is a broken body.
		{"gzip", append(gzipped(t, irisRows)[:len(gzipped(t, irisRows))-4], 1, 0, 0, 0), 400, "not valid gzip"},
	}
	for _, tt := range tests {
		req := httptest.NewRequest("POST", "/predict", bytes.NewReader(tt.body))
		req.Header.Set("Content-Encoding", tt.encoding)
		if code, _, body := f.send(t, req); code != tt.code || !bytes.Contains(body, []byte(tt.want)) {
			t.Errorf("%s body = %d %s, want %d", tt.encoding, code, body, tt.code)
		}
	}
}

// TestCompression_bombsAreRefusedByTheirRatio: past a megabyte, a body
// that inflates more than 256 times its size is refused before the body
// limit is reached.
func TestCompression_bombsAreRefusedByTheirRatio(t *testing.T) {
	f, ready := newFixtureWith(t, "iris", irisFunctions, fixtureOptions{server: func(c *Config) { c.MaxBodyBytes = 64 << 20 }})
	ready()
	spaces := `{"data": [` + strings.Repeat(" ", 32<<20) + `[0, 1, 2, 3, 4]]}`
	// Two members, so that the trailer's size (of the last) does not tell.
	bomb := append(gzipped(t, spaces), gzipped(t, " ")...)
	req := httptest.NewRequest("POST", "/predict", bytes.NewReader(bomb))
	req.Header.Set("Content-Encoding", "gzip")
	code, _, body := f.send(t, req)
	if code != 413 || !bytes.Contains(body, []byte("more than 256 times as many")) {
		t.Errorf("a %d-byte bomb = %d %s", len(bomb), code, body)
	}
	// A real table of zeros, with long names, is far below the ratio.
	var rows strings.Builder
	rows.WriteString(`{"data": [`)
	for i := range 20000 {
		if i > 0 {
			rows.WriteString(",")
		}
		fmt.Fprintf(&rows, `[%d, {"features_0": 0, "features_1": 0, "features_2": 0, "features_3": 0}]`, i)
	}
	rows.WriteString("]}")
	req = httptest.NewRequest("POST", "/predict", bytes.NewReader(gzipped(t, rows.String())))
	req.Header.Set("Content-Encoding", "gzip")
	if code, _, body := f.send(t, req); code != 200 {
		t.Errorf("a table of zeros, gzipped = %d %.200s", code, body)
	}
}

func deflated(t testing.TB, s string) []byte {
	t.Helper()
	var b bytes.Buffer
	w := zlib.NewWriter(&b)
	w.Write([]byte(s))
	w.Close()
	return b.Bytes()
}

func TestResponseEncoding(t *testing.T) {
	tests := map[string]string{
		"":                        "",
		"gzip":                    "gzip",
		"gzip, deflate, br":       "gzip",
		"deflate":                 "deflate",
		"br":                      "",
		"*":                       "gzip",
		"gzip;q=0, deflate":       "deflate",
		"deflate;q=0.9, gzip;q=1": "gzip",
		"identity":                "",
	}
	for in, want := range tests {
		if got := responseEncoding(in); got != want {
			t.Errorf("responseEncoding(%q) = %q, want %q", in, got, want)
		}
	}
}

// failingRunner fails its runs while fail is set, as a worker whose
// device is lost.
type failingRunner struct {
	admission.Runner
	fail atomic.Bool
}

func (f *failingRunner) Run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	if f.fail.Load() {
		return nil, errors.New("injected failure: the device was lost")
	}
	return f.Runner.Run(ctx, inputs)
}

// TestStatusDiscipline_whatARetryCanFixIsNeverA4xx: the gateway fails the
// whole query on a 4xx other than 429, so a transient problem must be a
// 429 or a 5xx.
func TestStatusDiscipline_whatARetryCanFixIsNeverA4xx(t *testing.T) {
	var runner *failingRunner
	f, ready := newFixtureWith(t, "encoder", encoderFunctions, fixtureOptions{
		admission: admission.Config{MaxBatchRows: 4096, MaxQueuedRequests: 1},
		wrap: func(r admission.Runner) admission.Runner {
			runner = &failingRunner{Runner: r}
			return runner
		},
	})
	row := `{"data": [` + encoderRow(0) + `]}`
	check := func(name string, req *http.Request, want ...int) {
		t.Helper()
		code, _, body := f.send(t, req)
		if !slices.Contains(want, code) {
			t.Errorf("%s = %d %.200s, want %v", name, code, body, want)
		}
		if code >= 400 && code < 500 && code != http.StatusTooManyRequests {
			t.Errorf("%s: a 4xx fails the query, but a retry could fix this", name)
		}
	}
	check("still loading", gatewayRequest("POST", "/predict", "q", "b1", row), http.StatusServiceUnavailable)
	ready()

	runner.fail.Store(true)
	check("a worker failed", gatewayRequest("POST", "/predict", "q", "b2", row), http.StatusInternalServerError)
	runner.fail.Store(false)
	check("the same batch, retried", gatewayRequest("POST", "/predict", "q", "b2", row), http.StatusOK)

	f.occupy(t)
	go f.srv.Test(httptest.NewRequest("POST", "/predict", strings.NewReader(row))) // fills the queue
	waitForGauge(t, f.metrics, "modelserve_queue_requests", 1)
	check("overloaded", gatewayRequest("POST", "/predict", "q", "b3", row), http.StatusTooManyRequests)

	f.srv.SetAdmitter(f.name, nil)
	check("draining", gatewayRequest("POST", "/predict", "q", "b4", row), http.StatusServiceUnavailable)
	ready()
	late := gatewayRequest("POST", "/predict", "q", "b5", row)
	late.Header.Set(TimeoutHeader, "10ms")
	check("cannot make its deadline", late, http.StatusTooManyRequests, http.StatusGatewayTimeout)
}
