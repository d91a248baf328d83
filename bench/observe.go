package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/protobuf/proto"

	"github.com/modelserve/modelserve/internal/loadgen"
)

// collector is an OTLP/HTTP trace receiver: it decodes each export as a
// collector does, and counts the spans.
type collector struct {
	spans atomic.Int64
	srv   *http.Server
	url   string
}

func startCollector() (*collector, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	c := &collector{url: "http://" + ln.Addr().String()}
	c.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		var req coltrace.ExportTraceServiceRequest
		if err == nil {
			err = proto.Unmarshal(b, &req)
		}
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		for _, rs := range req.GetResourceSpans() {
			for _, ss := range rs.GetScopeSpans() {
				c.spans.Add(int64(len(ss.GetSpans())))
			}
		}
		out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.Write(out)
	})}
	go c.srv.Serve(ln)
	return c, nil
}

// labelled is a counter's value for one label value, 0 if absent.
func labelled(p *process, name, value string) float64 {
	fams, err := p.families()
	if err != nil {
		return 0
	}
	total := 0.0
	for _, m := range fams[name].GetMetric() {
		for _, l := range m.GetLabel() {
			if l.GetValue() == value {
				total += m.GetCounter().GetValue()
			}
		}
	}
	return total
}

// observeRounds is how often each cell of the observe section is measured.
const observeRounds = 5

// observeSection: what tracing and the inference log cost, at 1% and at
// 100% of requests, against neither: 1-row requests/s and 4096-row rows/s
// on the MLP, each cell a fresh server, the cells interleaved over rounds.
func observeSection(e *env) (string, error) {
	col, err := startCollector()
	if err != nil {
		return "", err
	}
	defer col.srv.Close()
	logs, err := os.MkdirTemp("", "modelserve-bench-log-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(logs)
	n := 0
	logDir := func() string { n++; return fmt.Sprintf("%s/%d", logs, n) }
	cells := []struct {
		label string
		args  func() []string
	}{
		{"neither", func() []string { return nil }},
		{"tracing, 1%", func() []string { return []string{"--otlp-endpoint", col.url, "--trace-sample", "0.01"} }},
		{"tracing, 100%", func() []string { return []string{"--otlp-endpoint", col.url, "--trace-sample", "1"} }},
		{"inference log, 1%", func() []string { return []string{"--inference-log", logDir(), "--inference-log-sample", "0.01"} }},
		{"inference log, 100%", func() []string { return []string{"--inference-log", logDir(), "--inference-log-sample", "1"} }},
	}
	loads := []struct {
		rows, callers int
	}{{1, 16}, {4096, 2}}
	type measured struct {
		perSecond [2][]float64 // requests/s for 1 row, rows/s for 4096
		p99       [2][]time.Duration
		cpu       [2][]float64 // the server's CPU µs a request (1 row) or a row (4096)
		spans     float64
		dropped   float64
	}
	results := make([]measured, len(cells))
	window := max(e.o.duration*5/8, 3*time.Second)
	for round := range observeRounds {
		// Each round starts at another cell, so that none always follows
		// the same one (the log's writes are flushed by the kernel after
		// its server stops: sync waits for that too).
		for j := range cells {
			i := (j + round) % len(cells)
			c := cells[i]
			fmt.Fprintf(os.Stderr, "bench: observe round %d: %s\n", round+1, c.label)
			s, err := e.serve(mlp, c.args()...)
			if err != nil {
				return "", fmt.Errorf("%s: %w", c.label, err)
			}
			before := col.spans.Load()
			for k, l := range loads {
				var cpu [2]time.Duration
				st := closedLoop(s.host, body(mlp, l.rows, true), l.callers, window, func(open bool) {
					if open {
						cpu[0] = s.cpuOr0()
					} else {
						cpu[1] = s.cpuOr0()
					}
				})
				if others := st.Others() + len(st.Rejected); others > 0 || len(st.OK) == 0 {
					s.stop()
					return "", fmt.Errorf("%s, %d rows: %d answered, others %v", c.label, l.rows, len(st.OK), st.Statuses)
				}
				results[i].perSecond[k] = append(results[i].perSecond[k], st.OKPerSecond()*float64(l.rows))
				results[i].p99[k] = append(results[i].p99[k], percentile(st.OK, 0.99))
				results[i].cpu[k] = append(results[i].cpu[k], float64((cpu[1]-cpu[0]).Microseconds())/float64(len(st.OK)*l.rows))
			}
			results[i].dropped += labelled(s, "modelserve_trace_spans_total", "dropped") + labelled(s, "modelserve_inference_log_requests_total", "dropped")
			s.stop() // flushes what is queued
			syscall.Sync()
			results[i].spans += float64(col.spans.Load() - before)
		}
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## The cost of seeing every request: tracing and the inference log\n\n")
	fmt.Fprintf(&b, "The MLP; 1-row requests from 16 callers and 4096-row requests from 2, closed loop, %s each; each cell a fresh server, the cells interleaved over %d rounds (each round begun at the next cell, the disk synced between cells), medians shown. CPU is the server process's own (user and system) over the window, a request or a row: steadier than throughput on a shared host. Tracing exports over OTLP/HTTP to a receiver in this program that decodes every export; the inference log writes Parquet to a local folder. Dropped: spans or logged requests the server dropped (all rounds).\n\n", window, observeRounds)
	fmt.Fprintln(&b, "| cell | 1-row requests/s | ÷ neither | CPU µs a request | p99 | 4096-row rows/s | ÷ neither | CPU µs a row | p99 | spans exported | dropped |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	base := [2]float64{median(results[0].perSecond[0]), median(results[0].perSecond[1])}
	baseCPU := [2]float64{median(results[0].cpu[0]), median(results[0].cpu[1])}
	worst, worstCPU := 1.0, 1.0
	for i, r := range results {
		one, big := median(r.perSecond[0]), median(r.perSecond[1])
		cpuOne, cpuBig := median(r.cpu[0]), median(r.cpu[1])
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.1f | %s | %.0f | %.2f | %.2f | %s | %.0f | %.0f |\n", cells[i].label, one, one/base[0], cpuOne,
			short(medianDuration(r.p99[0])), big, big/base[1], cpuBig, short(medianDuration(r.p99[1])), r.spans, r.dropped)
		if strings.HasSuffix(cells[i].label, " 1%") {
			worst = min(worst, one/base[0], big/base[1])
			worstCPU = max(worstCPU, cpuOne/baseCPU[0], cpuBig/baseCPU[1])
		}
	}
	fmt.Fprintf(&b, "\nGoal: at 1%%, within 5%% of neither. Throughput: the worst 1%% ratio is %.2f, %s; server CPU: the most a 1%% cell costs is %.2f× neither's, %s.\n",
		worst, verdict(worst >= 0.95), worstCPU, verdict(worstCPU <= 1.05))
	return b.String(), nil
}

func medianDuration(ds []time.Duration) time.Duration { return loadgen.Percentile(ds, 0.5) }
