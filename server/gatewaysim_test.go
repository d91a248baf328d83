package server

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/onnxrt"
)

// gatewaySim behaves like the SQL gateway calling a service function over
// a table: it cuts the rows into batches, sends them concurrently with the
// gateway's headers, retries 429 and 5xx with the same batch id and
// backoff, polls after a 202, and reassembles the answers row by row. A
// 4xx other than 429 fails the query, as it does in the warehouse.
type gatewaySim struct {
	url         string // http://host:port/path
	queryID     string
	batchRows   int
	concurrency int
	gzip        bool
	// maxAttempts bounds the sends of one batch.
	maxAttempts int

	client *http.Client

	mu       sync.Mutex
	statuses map[int]int
	polls    int
}

func newGatewaySim(url string) *gatewaySim {
	return &gatewaySim{
		url: url, queryID: "01b2-query", batchRows: 100, concurrency: 8, maxAttempts: 1000,
		client:   &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}, Timeout: 5 * time.Minute},
		statuses: map[int]int{},
	}
}

// table is the rows the warehouse holds: width float features each.
type table struct {
	width int
	data  []float32 // rows × width
}

func (t table) rows() int { return len(t.data) / t.width }

// newTable makes rows of width values of few digits (so the JSON stays
// small) that float32 holds exactly.
func newTable(rows, width int) table {
	rng := rand.New(rand.NewPCG(21, 22))
	t := table{width: width, data: make([]float32, rows*width)}
	for i := range t.data {
		t.data[i] = float32(rng.IntN(4096)-2048) / 256
	}
	return t
}

// run sends the whole table and returns each row's output values.
func (g *gatewaySim) run(ctx context.Context, t table, output string) ([][]float32, error) {
	n := t.rows()
	results := make([][]float32, n)
	batches := (n + g.batchRows - 1) / g.batchRows
	next := make(chan int)
	errs := make(chan error, g.concurrency)
	var wg sync.WaitGroup
	for range g.concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for b := range next {
				lo := b * g.batchRows
				hi := min(lo+g.batchRows, n)
				rows, err := g.batch(ctx, t, lo, hi, strconv.Itoa(b), output)
				if err != nil {
					errs <- fmt.Errorf("batch %d: %w", b, err)
					return
				}
				for i, r := range rows {
					if results[lo+i] != nil {
						errs <- fmt.Errorf("row %d answered twice", lo+i)
						return
					}
					results[lo+i] = r
				}
			}
		}()
	}
	var err error
send:
	for b := range batches {
		select {
		case next <- b:
		case err = <-errs:
			break send
		}
	}
	close(next)
	wg.Wait()
	if err == nil {
		select {
		case err = <-errs:
		default:
		}
	}
	return results, err
}

// batch sends rows [lo, hi) as one batch until it is answered.
func (g *gatewaySim) batch(ctx context.Context, t table, lo, hi int, batchID, output string) ([][]float32, error) {
	body := []byte(`{"data":[`)
	for r := lo; r < hi; r++ {
		if r > lo {
			body = append(body, ',')
		}
		body = append(body, '[')
		body = strconv.AppendInt(body, int64(r-lo), 10)
		for _, v := range t.data[r*t.width : (r+1)*t.width] {
			body = append(body, ',')
			body = strconv.AppendFloat(body, float64(v), 'g', -1, 32)
		}
		body = append(body, ']')
	}
	body = append(body, "]}"...)
	if g.gzip {
		var z bytes.Buffer
		w := gzip.NewWriter(&z)
		w.Write(body)
		w.Close()
		body = z.Bytes()
	}
	backoff := 5 * time.Millisecond
	method := http.MethodPost
	for attempt := 0; attempt < g.maxAttempts; attempt++ {
		status, answer, err := g.send(ctx, method, batchID, body)
		if err != nil {
			return nil, err
		}
		g.mu.Lock()
		g.statuses[status]++
		g.mu.Unlock()
		switch {
		case status == http.StatusOK:
			return parseRows(answer, hi-lo, output)
		case status == http.StatusAccepted:
			// Poll the same batch until it is done.
			method = http.MethodGet
			g.mu.Lock()
			g.polls++
			g.mu.Unlock()
			time.Sleep(10 * time.Millisecond)
			continue
		case status == http.StatusTooManyRequests || status >= 500:
			time.Sleep(backoff + time.Duration(rand.Int64N(int64(backoff))))
			backoff = min(2*backoff, 500*time.Millisecond)
			method = http.MethodPost
			continue
		}
		return nil, fmt.Errorf("the query fails: %d %.300s", status, answer)
	}
	return nil, errors.New("gave up retrying")
}

func (g *gatewaySim) send(ctx context.Context, method, batchID string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if method == http.MethodPost {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, g.url, rd)
	if err != nil {
		return 0, nil, err
	}
	for k, v := range map[string]string{
		"sf-external-function-format":           "json",
		"sf-external-function-format-version":   "1.0",
		"sf-external-function-current-query-id": g.queryID,
		"sf-external-function-query-batch-id":   batchID,
		"sf-external-function-name":             "SVC_PREDICT",
		"sf-external-function-name-base64":      "U1ZDX1BSRURJQ1Q=",
		"sf-context-current-user":               "SIMULATOR",
	} {
		req.Header.Set(k, v)
	}
	if g.gzip {
		req.Header.Set("Content-Encoding", "gzip")
		req.Header.Set("Accept-Encoding", "gzip")
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	var r io.Reader = resp.Body
	if resp.Header.Get("Content-Encoding") == "gzip" {
		if r, err = gzip.NewReader(resp.Body); err != nil {
			return 0, nil, err
		}
	}
	answer, err := io.ReadAll(r)
	return resp.StatusCode, answer, err
}

// parseRows reads an answer of n rows, numbered 0..n-1 in order, each an
// object holding output.
func parseRows(answer []byte, n int, output string) ([][]float32, error) {
	var v struct{ Data [][2]json.RawMessage }
	if err := json.Unmarshal(answer, &v); err != nil {
		return nil, fmt.Errorf("not an answer: %w", err)
	}
	if len(v.Data) != n {
		return nil, fmt.Errorf("%d rows answered for %d sent", len(v.Data), n)
	}
	out := make([][]float32, n)
	for i, row := range v.Data {
		var id int
		if err := json.Unmarshal(row[0], &id); err != nil || id != i {
			return nil, fmt.Errorf("row %d came back as row %s", i, row[0])
		}
		var obj map[string][]float32
		if err := json.Unmarshal(row[1], &obj); err != nil {
			return nil, fmt.Errorf("row %d: %w", i, err)
		}
		out[i] = obj[output]
	}
	return out, nil
}

// expected runs the table through ONNX Runtime in process.
func expected(t *testing.T, name string, inputs []model.Spec, output string, tb table) [][]float32 {
	t.Helper()
	rt := testenv.Runtime(t)
	sess, err := rt.NewSession(testenv.Model(t, name), []string{inputs[0].Name}, []string{output}, onnxrtOptions())
	if err != nil {
		t.Fatal(err)
	}
	defer sess.Close()
	n := tb.rows()
	out := make([][]float32, 0, n)
	for lo := 0; lo < n; lo += 8192 {
		hi := min(lo+8192, n)
		in := model.Tensor{DType: model.Float32, Shape: model.Shape{int64(hi - lo), int64(tb.width)}, Data: tb.data[lo*tb.width : hi*tb.width]}
		res, err := sess.Run(context.Background(), []model.Tensor{in})
		if err != nil {
			t.Fatal(err)
		}
		y := res[0].Data.([]float32)
		k := res[0].RowElements()
		for r := range hi - lo {
			out = append(out, y[r*k:(r+1)*k])
		}
	}
	return out
}

// compare checks every row against the model's own answer; batching may
// change the last bits of a float sum, nothing more.
func compare(got, want [][]float32) error {
	if len(got) != len(want) {
		return fmt.Errorf("%d rows answered, %d in the table", len(got), len(want))
	}
	for r := range want {
		if got[r] == nil {
			return fmt.Errorf("row %d was lost", r)
		}
		if len(got[r]) != len(want[r]) {
			return fmt.Errorf("row %d has %d values, want %d", r, len(got[r]), len(want[r]))
		}
		for k := range want[r] {
			if d := math.Abs(float64(got[r][k] - want[r][k])); d > 1e-5*math.Max(1, math.Abs(float64(want[r][k]))) {
				return fmt.Errorf("row %d value %d = %v, the model says %v", r, k, got[r][k], want[r][k])
			}
		}
	}
	return nil
}

var (
	mlpInputs    = []model.Spec{{Name: "x", DType: model.Float32, Shape: model.Shape{-1, 64}}}
	mlpFunctions = []model.Function{{Name: "predict", Outputs: []string{"y"}}}
)

// serveOver starts the fixture's server on a real socket.
func serveOver(t *testing.T, f fixture) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go f.srv.Serve(ln)
	return "http://" + ln.Addr().String()
}

// flakyRunner fails every nth run, as a worker that crashes now and then.
type flakyRunner struct {
	admission.Runner
	every int64
	n     atomic.Int64
}

func (f *flakyRunner) Run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	if f.n.Add(1)%f.every == 0 {
		return nil, errors.New("injected failure: the worker stopped")
	}
	return f.Runner.Run(ctx, inputs)
}

func TestGatewaySimulator_retriesThroughFailingWorkersAndOverload(t *testing.T) {
	f, ready := newFixtureWith(t, "mlp", mlpFunctions, fixtureOptions{
		workers: 2,
		// A queue that refuses much: any wait past a millisecond of work
		// (a request with nothing ahead still runs).
		admission: admission.Config{MaxQueuedRows: 200, MaxBatchRows: 64, MaxQueueWait: time.Millisecond},
		wrap:      func(r admission.Runner) admission.Runner { return &flakyRunner{Runner: r, every: 7} },
	})
	ready()
	tb := newTable(20000, 64)
	sim := newGatewaySim(serveOver(t, f) + "/predict")
	sim.concurrency = 16
	got, err := sim.run(context.Background(), tb, "y")
	if err != nil {
		t.Fatal(err)
	}
	if err := compare(got, expected(t, "mlp", mlpInputs, "y", tb)); err != nil {
		t.Fatal(err)
	}
	if sim.statuses[http.StatusInternalServerError] == 0 || sim.statuses[http.StatusTooManyRequests] == 0 {
		t.Errorf("the run saw %v: neither failures nor overload were exercised", sim.statuses)
	}
}

func TestGatewaySimulator_followsAsyncBatches(t *testing.T) {
	f, ready := newFixtureWith(t, "mlp", mlpFunctions, fixtureOptions{
		workers:   2,
		admission: admission.Config{MaxBatchRows: 64},
		// Every batch of 500 rows is expected to take longer than 1µs.
		server: func(c *Config) { c.Async = Async{After: time.Microsecond} },
	})
	ready()
	tb := newTable(5000, 64)
	sim := newGatewaySim(serveOver(t, f) + "/predict")
	sim.batchRows = 500
	sim.gzip = true
	got, err := sim.run(context.Background(), tb, "y")
	if err != nil {
		t.Fatal(err)
	}
	if err := compare(got, expected(t, "mlp", mlpInputs, "y", tb)); err != nil {
		t.Fatal(err)
	}
	if sim.statuses[http.StatusAccepted] == 0 {
		t.Errorf("statuses %v: no batch went async", sim.statuses)
	}
}

func onnxrtOptions() onnxrt.SessionOptions { return onnxrt.SessionOptions{IntraOpThreads: 1} }
