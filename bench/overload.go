package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/modelserve/modelserve/internal/loadgen"
)

// overloadSection: three times the sustainable request rate, offered to
// the encoder on schedule (callers that do not wait for each other), with
// admission on and with it off.
func overloadSection(e *env) (string, error) {
	rows := e.o.overloadRows
	req := body(encoder, rows, false)

	fmt.Fprintf(os.Stderr, "bench: overload, unloaded and sustainable rates\n")
	s, err := e.serve(encoder)
	if err != nil {
		return "", err
	}
	unloaded := closedLoop(s.host, req, 1, e.o.duration, nil)
	// Enough callers to keep both workers and the queue full.
	conns := min(128, max(4, 4*64/rows))
	sustained := closedLoop(s.host, req, conns, e.o.duration, nil)
	s.stop()
	if unloaded.Others() > 0 || len(unloaded.OK) == 0 {
		return "", fmt.Errorf("unloaded run failed: %v", unloaded.Statuses)
	}
	rate := sustained.OKPerSecond()
	offered := 3 * rate
	unloadedP99 := percentile(unloaded.OK, 0.99)

	type result struct {
		label       string
		st          *loadgen.Stats
		ready, peak int64
		budget      float64
	}
	var results []result
	for _, c := range []struct {
		label string
		args  []string
	}{
		{"on (defaults)", nil},
		{"off (--unbounded-queue)", []string{"--unbounded-queue"}},
	} {
		fmt.Fprintf(os.Stderr, "bench: overload, admission %s\n", c.label)
		s, err := e.serve(encoder, c.args...)
		if err != nil {
			return "", err
		}
		ready, _, err := s.memory()
		if err != nil {
			return "", err
		}
		st := openLoop(s.host, req, offered, e.o.overload, 8192)
		_, peak, err := s.memory()
		if err != nil {
			return "", err
		}
		budget, err := s.metric("modelserve_memory_budget_bytes")
		if err != nil {
			return "", err
		}
		s.stop()
		results = append(results, result{label: c.label, st: st, ready: ready, peak: peak, budget: budget})
	}

	var b strings.Builder
	fmt.Fprintf(&b, "## Overload: 3× the sustainable rate on the encoder\n\n")
	fmt.Fprintf(&b, "Requests of %d rows (one array of 32 token ids per row). Unloaded (one caller at a time): p50 %s, p99 %s. Sustainable: %.1f requests/s (%d callers, closed loop). Offered: %.1f requests/s for %s, on schedule whatever the answers. Accepted latency counts from each request's scheduled time (so a generator that falls behind cannot hide queueing); the time to a 429 is shown both ways, and the target takes it from the send, since the generator, on the same two busy cores, wakes late by the lateness shown.\n\n",
		rows, short(percentile(unloaded.OK, 0.5)), short(unloadedP99), rate, conns, offered, e.o.overload)
	fmt.Fprintln(&b, "| admission | 200 | 429 | other | accepted p50 | accepted p99 | p99 ÷ unloaded p99 | median time to 429 (from schedule / from send) | generator lateness p50 / p99 | RSS at ready | peak RSS | memory budget |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		budget := "none"
		if r.budget > 0 {
			budget = mib(int64(r.budget))
		}
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %s | %s | %.1f | %s / %s | %s / %s | %s | %s | %s |\n", r.label, len(r.st.OK), len(r.st.Rejected), r.st.Others()+r.st.Dropped,
			short(percentile(r.st.OK, 0.5)), short(percentile(r.st.OK, 0.99)), float64(percentile(r.st.OK, 0.99))/float64(unloadedP99),
			short(percentile(r.st.Rejected, 0.5)), short(percentile(r.st.RejectedFromSend, 0.5)),
			short(percentile(r.st.Late, 0.5)), short(percentile(r.st.Late, 0.99)), mib(r.ready), mib(r.peak), budget)
	}
	on := results[0]
	ratio := float64(percentile(on.st.OK, 0.99)) / float64(unloadedP99)
	median429 := percentile(on.st.RejectedFromSend, 0.5)
	within := on.budget <= 0 || float64(on.peak-on.ready) <= on.budget
	fmt.Fprintf(&b, "\nTargets (admission on): accepted p99 ≤ 3× unloaded p99: %.1f×, %s; median time to a 429 under 1 ms: %s, %s; RSS growth within the budget: %s over %s at ready, %s; only 200 and 429: %d others, %s.\n",
		ratio, verdict(ratio <= 3), short(median429), verdict(median429 < time.Millisecond && len(on.st.Rejected) > 0),
		mib(on.peak-on.ready), mib(on.ready), verdict(within), on.st.Others()+on.st.Dropped, verdict(on.st.Others()+on.st.Dropped == 0))
	return b.String(), nil
}
