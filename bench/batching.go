package main

import (
	"cmp"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/loadgen"
)

// batchClients is how many 1-row callers the batching section runs at
// once; batchRounds how often each cell is measured.
const (
	batchClients = 64
	batchRounds  = 3
)

type result struct {
	label     string
	st        *loadgen.Stats
	meanBatch float64
}

// batchingCell serves m and measures it under batchClients callers.
func batchingCell(e *env, label string, m benchModel, args []string) (result, error) {
	s, err := e.serve(m, args...)
	if err != nil {
		return result{}, err
	}
	var sum0, count0, sum1, count1 float64
	var merr error
	st := closedLoop(s.host, body(m, 1, true), batchClients, e.o.duration, func(open bool) {
		sum, err1 := s.metric("modelserve_batch_rows_sum")
		count, err2 := s.metric("modelserve_batch_rows_count")
		if merr = errors.Join(merr, err1, err2); open {
			sum0, count0 = sum, count
		} else {
			sum1, count1 = sum, count
		}
	})
	s.stop()
	if merr != nil {
		return result{}, merr
	}
	if n := st.Others(); n > 0 {
		return result{}, fmt.Errorf("%s: %d requests failed: %v", label, n, st.Statuses)
	}
	return result{label, st, (sum1 - sum0) / max(count1-count0, 1)}, nil
}

// batchingSection: 64 concurrent 1-row callers, the way a warehouse's
// rows arrive when each batch is small, on the DLRM with dynamic batching
// on and off, against the ceiling of the wire path.
func batchingSection(e *env) (string, error) {
	one := engine.Plan{Device: engine.CPU, Workers: 1, IntraOpThreads: 1}
	raw1, err := measureRaw(e.modelPath(dlrm), dlrm, 1, one, 3*time.Second)
	if err != nil {
		return "", err
	}
	raw64, err := measureRaw(e.modelPath(dlrm), dlrm, 64, one, 3*time.Second)
	if err != nil {
		return "", err
	}
	cells := []struct {
		label string
		m     benchModel
		args  []string
	}{
		{"ceiling: one ReduceMean, same inputs", ceiling, nil},
		{"dlrm, batching on (defaults: up to 64 rows, delay auto)", dlrm, nil},
		{"dlrm, batching on, no wait (--max-batch-delay 0)", dlrm, []string{"--max-batch-delay", "0"}},
		{"dlrm, batching off (--max-batch-rows 1)", dlrm, []string{"--max-batch-rows", "1"}},
	}
	// Rounds interleave the cells, so drift on a shared machine spreads
	// over all of them; each cell reports its median round.
	rounds := make([][]result, len(cells))
	for round := range batchRounds {
		for i, c := range cells {
			fmt.Fprintf(os.Stderr, "bench: batching round %d: %s\n", round+1, c.label)
			r, err := batchingCell(e, c.label, c.m, c.args)
			if err != nil {
				return "", err
			}
			rounds[i] = append(rounds[i], r)
		}
	}
	results := make([]result, len(cells))
	for i, rs := range rounds {
		slices.SortFunc(rs, func(a, b result) int { return cmp.Compare(a.st.OKPerSecond(), b.st.OKPerSecond()) })
		results[i] = rs[len(rs)/2]
	}
	ceil, on, off := results[0], results[1], results[3]

	var b strings.Builder
	fmt.Fprintf(&b, "## Dynamic batching: %d concurrent 1-row callers\n\n", batchClients)
	fmt.Fprintf(&b, "Each caller sends its next request when the last is answered; the cells run interleaved, %d rounds, and each shows its median round. A row is 13 dense floats and 26 categorical ids as 39 scalar arguments, as the SQL gateway sends them. The DLRM-like model looks the ids up in 26 embedding tables and runs an MLP; raw ONNX Runtime (one session, one thread) does %.0f rows/s one row per call and %.0f rows/s 64 rows per call (%.1f× per row).\n\n",
		batchRounds, raw1, raw64, raw64/raw1)
	fmt.Fprintln(&b, "| server | requests/s | ÷ ceiling | mean rows per ONNX Runtime call | p50 | p99 | answers other than 200 |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		fmt.Fprintf(&b, "| %s | %.0f | %.2f | %.1f | %s | %s | %d |\n", r.label, r.st.OKPerSecond(), r.st.OKPerSecond()/ceil.st.OKPerSecond(),
			r.meanBatch, short(percentile(r.st.OK, 0.5)), short(percentile(r.st.OK, 0.99)), len(r.st.Rejected)+r.st.Others())
	}
	vsCeiling := on.st.OKPerSecond() / ceil.st.OKPerSecond()
	vsOff := on.st.OKPerSecond() / off.st.OKPerSecond()
	p99 := float64(percentile(on.st.OK, 0.99)) / float64(percentile(ceil.st.OK, 0.99))
	fmt.Fprintf(&b, "\nTargets: batching on ≥ 0.8× the ceiling's requests/s: %.2f×, %s; ≥ 1.4× batching off: %.2f×, %s; p99 ≤ 2× the ceiling's p99: %.2f×, %s.\n",
		vsCeiling, verdict(vsCeiling >= 0.8), vsOff, verdict(vsOff >= 1.4), p99, verdict(p99 <= 2))
	return b.String(), nil
}
