package main

import (
	"fmt"
	"os"
	"runtime"
	"strings"

	"github.com/modelserve/modelserve/engine"
)

// wireSection: what /predict costs on top of ONNX Runtime, per model and
// batch size, with the same workers on both sides.
func wireSection(e *env) (string, error) {
	cpus := runtime.GOMAXPROCS(0)
	// conns 0: one caller per worker and one more, so every worker is busy
	// and a batch waits; full batches leave the default queue (one batch
	// per worker) room to spare.
	cases := []struct {
		m       benchModel
		batch   int
		conns   int
		workers int
		note    string
	}{
		{m: mlp, batch: 1, conns: 16},
		{m: mlp, batch: 64},
		{m: encoder, batch: 1, conns: 8},
		{m: encoder, batch: 64},
		{m: encoder, batch: 64, workers: engine.ReferenceWorkers(cpus), note: "2×vCPU+1 workers"},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Wire overhead: raw ONNX Runtime against /predict\n\n")
	fmt.Fprintf(&b, "Raw: in-process sessions with tensors bound once, one goroutine each. /predict: the same workers behind HTTP, each request a batch of that many rows (one array per input); both warm up for 1s and count rows in a %s window. Workers are workers×intra-op threads. A 429 is the queue's answer when callers exactly fill it and a worker is a moment late; it is counted, not hidden, and /predict rows/s counts answered rows only.\n\n", e.o.duration)
	fmt.Fprintln(&b, "| model | batch | workers | connections | raw ORT rows/s | /predict rows/s | /predict ÷ raw | p50 | p99 | 429s |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, c := range cases {
		fmt.Fprintf(os.Stderr, "bench: wire %s batch %d %s\n", c.m.name, c.batch, c.note)
		p := engine.PlanCPU(engine.Options{Workers: c.workers}, cpus)
		if c.conns == 0 {
			c.conns = p.Workers + 1
		}
		raw, err := measureRaw(e.modelPath(c.m), c.m, c.batch, p, e.o.duration)
		if err != nil {
			return "", fmt.Errorf("raw %s: %w", c.m.name, err)
		}
		var extra []string
		if c.workers > 0 {
			extra = []string{"--workers", fmt.Sprint(c.workers)}
		}
		s, err := e.serve(c.m, extra...)
		if err != nil {
			return "", err
		}
		st := closedLoop(s.host, body(c.m, c.batch, false), c.conns, e.o.duration, nil)
		s.stop()
		if n := st.Others(); n > 0 {
			return "", fmt.Errorf("%s batch %d: %d requests failed: %v", c.m.name, c.batch, n, st.Statuses)
		}
		served := st.OKPerSecond() * float64(c.batch)
		name := c.m.name
		if c.note != "" {
			name += " (" + c.note + ")"
		}
		fmt.Fprintf(&b, "| %s | %d | %d×%d | %d | %.0f | %.0f | %.1f%% | %s | %s | %d |\n", name, c.batch, p.Workers, p.IntraOpThreads, c.conns,
			raw, served, 100*served/raw, short(percentile(st.OK, 0.5)), short(percentile(st.OK, 0.99)), len(st.Rejected))
	}
	return b.String(), nil
}
