package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/modelserve/modelserve/internal/loadgen"
)

// switchCallers is how many closed-loop callers the switch section runs.
const switchCallers = 16

// switchSection: a steady closed loop of 1-row and 64-row MLP requests
// against a server following mlp:prod, once with the alias still and once
// moved (to a second version) a third of the way in: requests/s, p99 and
// every answer that was not a 200.
func switchSection(e *env) (string, error) {
	registry := func(args ...string) error {
		out, err := exec.Command(e.o.binary, append([]string{"--registry", e.registry, "registry"}, args...)...).CombinedOutput()
		if err != nil {
			return fmt.Errorf("registry %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := registry("log", "--name", mlp.name, "--version", "2", "--file", e.modelPath(mlp)); err != nil {
		return "", err
	}
	payloads := []loadgen.Payload{{Body: body(mlp, 1, false), Rows: 1}, {Body: body(mlp, 64, false), Rows: 64}}
	var b strings.Builder
	fmt.Fprintf(&b, "## Switching versions under load\n\n")
	fmt.Fprintf(&b, "`serve --model mlp:prod --follow-interval 100ms`; %d callers in a closed loop of 1-row and 64-row MLP requests (alternating) for %s after a second of warm-up. In the second run `registry alias mlp prod 2` moves the alias a third of the way in: the server loads and warms version 2 beside version 1, switches, drains and unloads version 1.\n\n",
		switchCallers, e.o.duration)
	fmt.Fprintln(&b, "| run | requests/s | rows/s | p50 | p99 | answers other than 200 | versions answering |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---|")
	var p99s [2]time.Duration
	var others int
	for i, move := range []bool{false, true} {
		label := "steady, the alias still"
		if move {
			label = "the alias moved 1 → 2 a third of the way in"
		}
		fmt.Fprintf(os.Stderr, "bench: switch, %s\n", label)
		if err := registry("alias", mlp.name, "prod", "1"); err != nil {
			return "", err
		}
		s, err := e.serveRef(mlp.name+":prod", "--follow-interval", "100ms")
		if err != nil {
			return "", err
		}
		tg := target(s.host, switchCallers)
		var moved chan error
		st := tg.ClosedMix(payloads, switchCallers, time.Second, e.o.duration, func(open bool) {
			if open && move {
				moved = make(chan error, 1)
				time.AfterFunc(e.o.duration/3, func() { moved <- registry("alias", mlp.name, "prod", "2") })
			}
		})
		versions := "1"
		if move {
			if err := <-moved; err != nil {
				s.stop()
				return "", err
			}
			n, err := s.metric("modelserve_version_switches_total")
			if err != nil || n != 1 {
				s.stop()
				return "", fmt.Errorf("the alias move was not taken into service (%v switches, %v)", n, err)
			}
			versions = "1, then 2"
		}
		s.stop()
		p99s[i] = percentile(st.OK, 0.99)
		others += st.Others() + len(st.Rejected)
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %s | %s | %d | %s |\n", label, st.OKPerSecond(), float64(st.OKRows)/st.Elapsed.Seconds(),
			short(percentile(st.OK, 0.5)), short(p99s[i]), st.Others()+len(st.Rejected), versions)
	}
	ratio := float64(p99s[1]) / float64(p99s[0])
	fmt.Fprintf(&b, "\nTargets: no answer but 200 across the move (%d others: %s); p99 within 2× of the steady run's: %.2f×, %s.\n",
		others, verdict(others == 0), ratio, verdict(ratio <= 2))
	return b.String(), nil
}
