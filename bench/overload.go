package main

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modelserve/modelserve/internal/loadgen"
)

// overloadCallers is how many closed-loop callers measure capacity.
const overloadCallers = 16

// overloadShape is one kind of traffic the overload section offers.
type overloadShape struct {
	label string
	m     benchModel
	sizes []int
}

// overloadSection: for each shape, capacity (16 callers, closed loop),
// then three times that request rate offered on schedule for the
// overload duration; and a low-priority flood with a trickle of
// high-priority requests through it.
func overloadSection(e *env) (string, error) {
	shapes := []overloadShape{
		{"encoder, 1-row requests", encoder, []int{1}},
		{"encoder, 64-row requests", encoder, []int{64}},
		{"MLP, 1-row requests", mlp, []int{1}},
		{"MLP, a mix of 1, 16, 256 and 4096 rows", mlp, []int{1, 16, 256, 4096}},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## Overload: 3× capacity, for every request size\n\n")
	fmt.Fprintf(&b, "Default flags. Capacity: %d callers in a closed loop for %s (a 429 retried after 2 ms). Then 3× capacity's request rate offered on schedule for %s, whatever the answers; accepted latency counts from each request's scheduled time. The time to a 429 counts from its send, as the generator sees it (it shares the two cores, and its own goroutines wait for them behind the bodies it writes) and as a separate caller does: one client in a process of its own, sending the shape's smallest request 2 ms after each answer through the overload; the target is judged on the latter.\n\n",
		overloadCallers, e.o.duration, e.o.overload)
	fmt.Fprintln(&b, "| traffic | capacity rows/s | capacity p99 | offered requests/s | accepted rows/s (÷ capacity) | accepted p99 (÷ capacity p99) | median time to 429: generator, separate caller (its 429s) | Retry-After | other answers | in the server: p99 answer, p99 queue wait | sent late, p99 | cores used: server, generator | targets |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
	var encoderRate float64
	var mixed *struct {
		sizes []int
		stats *loadgen.Stats
	}
	for i, sh := range shapes {
		fmt.Fprintf(os.Stderr, "bench: overload, %s\n", sh.label)
		payloads := make([]loadgen.Payload, len(sh.sizes))
		for k, n := range sh.sizes {
			payloads[k] = loadgen.Payload{Body: body(sh.m, n, false), Rows: n}
		}
		s, err := e.serve(sh.m)
		if err != nil {
			return "", err
		}
		tg := target(s.host, 8192)
		tg.Backoff = 2 * time.Millisecond
		capacity := tg.ClosedMix(payloads, overloadCallers, time.Second, e.o.duration, nil)
		if capacity.Others() > 0 || len(capacity.OK) == 0 {
			s.stop()
			return "", fmt.Errorf("%s at capacity: %v", sh.label, capacity.Statuses)
		}
		rate := capacity.OKPerSecond()
		if i == 0 {
			encoderRate = rate
		}
		before, err := s.serverLatency()
		if err != nil {
			s.stop()
			return "", err
		}
		probe, err := startProbe(e, "http://"+s.host+"/predict", payloads[0].Body, 2*time.Second, e.o.overload-4*time.Second)
		if err != nil {
			s.stop()
			return "", err
		}
		serverCPU, genCPU := s.cpuOr0(), selfCPU()
		open := tg.OpenMix(payloads, 3*rate, e.o.overload, 8192)
		probed, err := probe()
		if err != nil {
			s.stop()
			return "", err
		}
		if len(sh.sizes) > 1 {
			mixed = &struct {
				sizes []int
				stats *loadgen.Stats
			}{sh.sizes, open}
		}
		serverCPU, genCPU = s.cpuOr0()-serverCPU, selfCPU()-genCPU
		after, err := s.serverLatency()
		s.stop()
		if err != nil {
			return "", err
		}
		capRows := float64(capacity.OKRows) / capacity.Elapsed.Seconds()
		rows := float64(open.OKRows) / open.Elapsed.Seconds()
		capP99, p99 := percentile(capacity.OK, 0.99), percentile(open.OK, 0.99)
		to429, probed429 := percentile(open.RejectedFromSend, 0.5), percentile(probed.Refused, 0.5)
		others := open.Others() + open.Dropped + probed.Errors
		for status, n := range probed.Statuses {
			if status != 200 && status != 429 {
				others += n
			}
		}
		okRows, okP99, ok429, okOthers := rows >= 0.85*capRows, p99 <= 3*capP99, len(probed.Refused) > 0 && probed429 < time.Millisecond, others == 0
		fmt.Fprintf(&b, "| %s | %.0f | %s | %.0f | %.0f (%.2f) | %s (%.1f) | %s, %s (%d) | %s | %d | ≤ %s, ≤ %s | %s | %.2f, %.2f | rows %s, p99 %s, 429 %s, others %s |\n",
			sh.label, capRows, short(capP99), 3*rate, rows, rows/capRows, short(p99), float64(p99)/float64(capP99),
			short(to429), short(probed429), len(probed.Refused), retryAfters(open.RetryAfter), others,
			short(after[0].quantile(before[0], 0.99)), short(after[1].quantile(before[1], 0.99)), short(percentile(open.Late, 0.99)),
			serverCPU.Seconds()/open.Elapsed.Seconds(), genCPU.Seconds()/open.Elapsed.Seconds(),
			verdict(okRows), verdict(okP99), verdict(ok429), verdict(okOthers))
	}

	if mixed != nil {
		fmt.Fprintf(&b, "\nMedian time to a 429 in the mix, by request size:")
		for k, n := range mixed.sizes {
			fmt.Fprintf(&b, " %d rows %s (%d refused)%s", n, short(percentile(mixed.stats.RejectedBySize[n], 0.5)), len(mixed.stats.RejectedBySize[n]),
				map[bool]string{true: ".", false: ";"}[k == len(mixed.sizes)-1])
		}
		fmt.Fprintln(&b)
	}

	// A low-priority flood at 3× the encoder's 1-row capacity, and one
	// high-priority caller through it.
	fmt.Fprintf(os.Stderr, "bench: overload, priorities\n")
	s, err := e.serve(encoder)
	if err != nil {
		return "", err
	}
	one := body(encoder, 1, false)
	high := target(s.host, 4)
	high.SetHeader("X-Priority", "high")
	unloaded := high.Closed(one, 1, time.Second, e.o.duration, nil)
	low := target(s.host, 8192)
	low.SetHeader("X-Priority", "low")
	var flood *loadgen.Stats
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		flood = low.Open(one, 3*encoderRate, e.o.overload, 8192)
	}()
	waitBefore, err := s.histogram("modelserve_queue_wait_seconds", map[string]string{"priority": "high"})
	if err != nil {
		s.stop()
		return "", err
	}
	trickle := high.Closed(one, 1, 2*time.Second, e.o.overload-4*time.Second, nil)
	wg.Wait()
	waitAfter, err := s.histogram("modelserve_queue_wait_seconds", map[string]string{"priority": "high"})
	s.stop()
	if err != nil {
		return "", err
	}
	ratio := float64(percentile(trickle.OK, 0.99)) / float64(percentile(unloaded.OK, 0.99))
	fmt.Fprintf(&b, "\nPriorities, on the encoder: a low-priority flood of 1-row requests at 3× capacity (%.0f requests/s offered: %d answered 200, %d refused 429) and one high-priority caller through it: high-priority p99 %s against %s unloaded (%.1f×, target ≤ 2×: %s), p50 %s against %s; in the server, the high-priority rows' p99 queue wait ≤ %s; %d high-priority answers other than 200.\n",
		3*encoderRate, len(flood.OK), len(flood.Rejected), short(percentile(trickle.OK, 0.99)), short(percentile(unloaded.OK, 0.99)),
		ratio, verdict(ratio <= 2), short(percentile(trickle.OK, 0.5)), short(percentile(unloaded.OK, 0.5)),
		short(waitAfter.quantile(waitBefore, 0.99)), len(trickle.Rejected)+trickle.Others())
	return b.String(), nil
}

// cpuOr0 is the server's CPU time so far, 0 if it cannot be read.
func (s *process) cpuOr0() time.Duration {
	d, _ := s.cpu()
	return d
}

// serverLatency reads the histograms of the time to an answer (every
// answer, 429s too) and of the queue wait (accepted rows), as the server
// measures them: the difference of two readings is a phase's.
func (s *process) serverLatency() ([2]buckets, error) {
	var h [2]buckets
	var err error
	for i, name := range []string{"modelserve_request_duration_seconds", "modelserve_queue_wait_seconds"} {
		if h[i], err = s.histogram(name, nil); err != nil {
			return h, err
		}
	}
	return h, nil
}

// retryAfters is the median Retry-After, in seconds, of the 429s.
func retryAfters(vs []string) string {
	if len(vs) == 0 {
		return "-"
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	return s[len(s)/2] + " s"
}
