package server

import (
	"context"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
)

// panickyRunner panics while armed, as a bug in the code around a run
// would.
type panickyRunner struct {
	admission.Runner
	armed atomic.Bool
}

func (p *panickyRunner) Run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	if p.armed.Load() {
		var m map[string]int
		m["boom"]++ // a nil map: the kind of bug that panics
	}
	return p.Runner.Run(ctx, inputs)
}

// TestPanic_failsOneRequestAndTheServerGoesOn: a panic while a batch runs
// answers its request 500 with a request id, is counted and logged with
// its stack once, gives back what the request held, and the next request
// (a retried gateway batch too) is answered.
func TestPanic_failsOneRequestAndTheServerGoesOn(t *testing.T) {
	runner := &panickyRunner{}
	logs := &testenv.SyncBuffer{}
	reg := prometheus.NewRegistry()
	rec, err := panics.New(reg)
	if err != nil {
		t.Fatal(err)
	}
	f, ready := newFixtureWith(t, "iris", irisFunctions, fixtureOptions{
		log:       logs,
		admission: admission.Config{Panics: rec},
		server:    func(c *Config) { c.Panics = rec },
		wrap: func(r admission.Runner) admission.Runner {
			runner.Runner = r
			return runner
		},
	})
	ready()

	runner.armed.Store(true)
	req := gatewayRequest("POST", "/predict", "q1", "b1", irisRows)
	req.Header.Set(RequestIDHeader, "caller-id-17")
	status, header, body := f.send(t, req)
	if status != http.StatusInternalServerError || header.Get(RequestIDHeader) != "caller-id-17" ||
		!strings.Contains(string(body), "request id caller-id-17") {
		t.Fatalf("a panicking run = %d %s %q", status, header, body)
	}
	status, header, body = f.send(t, gatewayRequest("POST", "/predict", "q2", "b1", irisRows))
	if status != http.StatusInternalServerError || len(header.Get(RequestIDHeader)) == 0 {
		t.Fatalf("a second panicking run = %d %s %q", status, header, body)
	}

	runner.armed.Store(false)
	if status, _, body := f.do(t, "POST", "/predict", irisRows); status != http.StatusOK {
		t.Fatalf("the next request = %d %s", status, body)
	}
	// The failed gateway batch was not kept: its retry runs afresh.
	if status, _, body := f.send(t, gatewayRequest("POST", "/predict", "q1", "b1", irisRows)); status != http.StatusOK {
		t.Fatalf("the retried batch = %d %s", status, body)
	}
	if n := counter(t, reg, "modelserve_panics_total"); n != 2 {
		t.Errorf("modelserve_panics_total{where=admission} = %v, want 2", n)
	}
	if n := strings.Count(logs.String(), "panic recovered"); n != 2 {
		t.Errorf("%d panic log lines, want 2:\n%s", n, logs)
	}
	if n := strings.Count(logs.String(), "stack="); n != 2 {
		t.Errorf("%d stacks logged, want one per panic:\n%s", n, logs)
	}
	if !strings.Contains(logs.String(), "request_id=caller-id-17") || !strings.Contains(logs.String(), "panicky") {
		t.Errorf("the log names neither the request nor the panic's place:\n%s", logs)
	}
	// Only the kept answer of the retried batch still holds memory.
	if held, kept := counter(t, f.metrics, "modelserve_inflight_bytes"), counter(t, f.metrics, "modelserve_batch_results_bytes"); held != kept {
		t.Errorf("%v bytes still held after the requests ended; the kept answer holds %v", held, kept)
	}
}
