package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/inferencelog"
)

// stuckDisk is a file whose writes wait until released.
type stuckDisk struct {
	w       io.Writer
	release chan struct{}
}

func (s stuckDisk) Write(p []byte) (int, error) {
	<-s.release
	return s.w.Write(p)
}

func openLog(t *testing.T, cfg inferencelog.Config) *inferencelog.Log {
	t.Helper()
	cfg.Dir = t.TempDir()
	l, err := inferencelog.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close(context.Background()) })
	return l
}

func logged(t *testing.T, l *inferencelog.Log, dir string) map[string][]inferencelog.Row {
	t.Helper()
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	byQuery := map[string][]inferencelog.Row{}
	if err := inferencelog.Each(context.Background(), dir, func(r inferencelog.Row) error {
		key := r.QueryID
		if key == "" {
			key = r.Protocol
		}
		byQuery[key] = append(byQuery[key], r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return byQuery
}

// TestServer_inferenceLogKeepsEveryProtocolAndFailures: a gateway request,
// a gateway batch (run through the batch store, its retry not logged
// again), an Open Inference Protocol request and a failed request are
// each logged once with their rows, outputs, ids and status.
func TestServer_inferenceLogKeepsEveryProtocolAndFailures(t *testing.T) {
	dir := t.TempDir()
	l, err := inferencelog.Open(inferencelog.Config{Dir: dir, Sample: 1, Errors: true})
	if err != nil {
		t.Fatal(err)
	}
	f, ready := newFixtureWith(t, "iris", irisFunctions, fixtureOptions{server: func(c *Config) { c.InferenceLog = l }})
	ready()
	send := func(body string, headers ...string) int {
		req := httptest.NewRequest(http.MethodPost, "/predict", strings.NewReader(body))
		for i := 0; i < len(headers); i += 2 {
			req.Header.Set(headers[i], headers[i+1])
		}
		code, _, _ := f.send(t, req)
		return code
	}
	if code := send(irisRows, "sf-external-function-current-query-id", "plain"); code != 200 {
		t.Fatal(code)
	}
	for range 2 { // the second is a retry, answered from the store
		if code := send(irisRows, "sf-external-function-current-query-id", "batch", "sf-external-function-query-batch-id", "b1"); code != 200 {
			t.Fatal(code)
		}
	}
	if code := send(`{"data": [[0, 5.1, "x", 1.4, 0.2]]}`, "sf-external-function-current-query-id", "bad"); code != 400 {
		t.Fatal(code)
	}
	if code, _, body := f.do(t, "POST", "/v2/models/iris/infer", `{"inputs":[{"name":"features","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`); code != 200 {
		t.Fatal(code, body)
	}
	got := logged(t, l, dir)
	for _, q := range []string{"plain", "batch"} {
		rows := got[q]
		if len(rows) != 2 || *rows[0].Row != 0 || *rows[1].Row != 1 || rows[0].Status != 200 || rows[0].Function != "predict" ||
			rows[0].Inputs != `{"features":[5.1,3.5,1.4,0.2]}` || !strings.HasPrefix(rows[1].Outputs, `{"label":2,"probabilities":[`) {
			t.Errorf("%s: logged %+v", q, rows)
		}
		if q == "batch" && (len(rows) != 2 || rows[0].BatchID != "b1") {
			t.Errorf("the batch logged as %+v", rows)
		}
	}
	if bad := got["bad"]; len(bad) != 1 || bad[0].Status != 400 || !strings.Contains(bad[0].Error, "row 0") || bad[0].Row != nil {
		t.Errorf("the failed request logged as %+v", bad)
	}
	if oip := got["oip"]; len(oip) != 1 || oip[0].Function != "infer" || oip[0].Inputs != `{"features":[5.1,3.5,1.4,0.2]}` || !strings.Contains(oip[0].Outputs, `"probabilities":[`) {
		t.Errorf("the OIP request logged as %+v", oip)
	}
}

// TestServer_aStuckInferenceLogNeverSlowsPredictions: with the log's disk
// stuck, every prediction is answered; the log drops whole requests past
// its queue's bound and counts them, and keeps the others whole.
func TestServer_aStuckInferenceLogNeverSlowsPredictions(t *testing.T) {
	release := make(chan struct{})
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	l, err := inferencelog.Open(inferencelog.Config{Dir: dir, Sample: 1, MaxQueueBytes: 512 << 10, Registerer: reg,
		Sink: func(w io.Writer) io.Writer { return stuckDisk{w, release} }})
	if err != nil {
		t.Fatal(err)
	}
	f, ready := newFixtureWith(t, "iris", irisFunctions, fixtureOptions{server: func(c *Config) { c.InferenceLog = l }, admission: admission.Config{}})
	ready()
	// 4096-row requests: the file's first row group (about 4 MiB) fills
	// after a few, and its write sticks.
	const requests = 40
	for i := range requests {
		var b strings.Builder
		b.WriteString(`{"data": [`)
		for r := range 4096 {
			if r > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "[%d, %d, 3.5, 1.4, 0.2]", r, i)
		}
		b.WriteString("]}")
		if code, _, resp := f.do(t, "POST", "/predict", b.String()); code != 200 {
			t.Fatalf("request %d: %d %s", i, code, resp)
		}
	}
	close(release)
	got := logged(t, l, dir)
	count := func(outcome string) float64 {
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, mf := range mfs {
			for _, m := range mf.GetMetric() {
				if mf.GetName() == "modelserve_inference_log_requests_total" && m.GetLabel()[0].GetValue() == outcome {
					return m.GetCounter().GetValue()
				}
			}
		}
		return -1
	}
	requestsIn := map[string]int{}
	for _, r := range got["gateway"] {
		requestsIn[r.RequestID]++
	}
	for id, n := range requestsIn {
		if n != 4096 {
			t.Errorf("request %s has %d rows in the log, want 4096", id, n)
		}
	}
	kept, dropped := len(requestsIn), count("dropped")
	if kept == 0 || dropped <= 0 || float64(kept) != count("logged") || float64(kept)+dropped != requests {
		t.Errorf("%d of %d requests in the files, %v counted logged, %v dropped: want some dropped and counted, the rest kept", kept, requests, count("logged"), dropped)
	}
}
