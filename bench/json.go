package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/onnxrt"
	"github.com/modelserve/modelserve/server"
)

// baselineCommit is the commit before the gateway speed work: the bench
// builds its binary from git and measures it in the same run.
const baselineCommit = "f963f16"

// jsonShape is one request the JSON section measures.
type jsonShape struct {
	rows int
	wide bool
	body []byte
}

func (s jsonShape) String() string {
	return fmt.Sprintf("%d rows, %s", s.rows, map[bool]string{false: "flat", true: "wide"}[s.wide])
}

// jsonSection: the SQL gateway's JSON on the MLP (64 floats in, 8 out),
// flat rows and wide ones, in large and middling batches: decode and
// encode alone on one core, the whole trip against raw ONNX Runtime at
// the same batch size and against the binary of baselineCommit, where the
// server's core time goes, and one large request's latency on one core
// against all of them.
func jsonSection(e *env) (string, error) {
	rt, err := onnxrt.Load("")
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(e.modelPath(mlp))
	if err != nil {
		return "", err
	}
	info, err := rt.Inspect(b)
	if err != nil {
		return "", err
	}
	sig := model.Signature{Inputs: info.Inputs, Outputs: info.Outputs, Functions: []model.Function{{Name: "predict", Outputs: []string{"y"}}}}
	codec, err := server.NewCodec(sig, "predict")
	if err != nil {
		return "", err
	}
	var shapes []jsonShape
	for _, rows := range []int{4096, 256} {
		flat := body(mlp, rows, true)
		shapes = append(shapes, jsonShape{rows, false, flat}, jsonShape{rows, true, wideBody(flat)})
	}
	d := e.o.duration
	cores := runtime.GOMAXPROCS(0)
	plan := engine.PlanCPU(engine.Options{}, cores)

	// Decode and encode alone, in this process: on one core (GOMAXPROCS
	// 1: one goroutine, as the server does under load), and on all.
	type alone struct {
		decode1, encode1 float64 // requests a second of CPU time
		decodeAll        float64 // requests a second
		answer           int     // bytes
		allocsPerRow     float64
	}
	stages := make([]alone, len(shapes))
	// Three rounds over every shape, each measure the median of its
	// rounds: this machine's speed drifts by more than the steps
	// between shapes.
	const rounds = 3
	var dec1, decAll, enc1 [][]float64
	decodedAs := make([]*server.Decoded, len(shapes))
	outsOf := make([][]model.Tensor, len(shapes))
	for k, sh := range shapes {
		decoded, err := codec.Decode(sh.body)
		if err != nil {
			return "", fmt.Errorf("%s: %w", sh, err)
		}
		outs := []model.Tensor{{DType: model.Float32, Shape: model.Shape{int64(sh.rows), 8}, Data: make([]float32, sh.rows*8)}}
		for i := range outs[0].Data.([]float32) {
			outs[0].Data.([]float32)[i] = float32(i%97)/31 - 1
		}
		decodedAs[k], outsOf[k] = decoded, outs
		stages[k].answer = len(codec.Encode(nil, decoded, outs))
		var before, after runtime.MemStats
		prev := runtime.GOMAXPROCS(1)
		runtime.ReadMemStats(&before)
		const n = 20
		for range n {
			if d, err := codec.Decode(sh.body); err == nil {
				codec.Release(d)
			}
		}
		runtime.ReadMemStats(&after)
		runtime.GOMAXPROCS(prev)
		stages[k].allocsPerRow = float64(after.Mallocs-before.Mallocs) / n / float64(sh.rows)
		dec1, decAll, enc1 = append(dec1, nil), append(decAll, nil), append(enc1, nil)
	}
	for round := range rounds {
		for k, sh := range shapes {
			fmt.Fprintf(os.Stderr, "bench: json decode and encode, %s, round %d\n", sh, round+1)
			// As the server does: the inputs' memory back to the pool
			// once used.
			decode := func() error {
				d, err := codec.Decode(sh.body)
				if err == nil {
					codec.Release(d)
				}
				return err
			}
			var buf []byte
			encode := func() error { buf = codec.Encode(buf[:0], decodedAs[k], outsOf[k]); return nil }
			wall, cpu := perSecondAndCore(d/4, decode)
			decAll[k], dec1[k] = append(decAll[k], wall), append(dec1[k], cpu)
			_, cpu = perSecondAndCore(d/4, encode)
			enc1[k] = append(enc1[k], cpu)
		}
	}
	for k := range shapes {
		stages[k].decode1, stages[k].decodeAll, stages[k].encode1 = median(dec1[k]), median(decAll[k]), median(enc1[k])
	}

	fmt.Fprintf(os.Stderr, "bench: json baseline binary (%s)\n", baselineCommit)
	baseline, baseErr := buildBaseline(e)

	// Raw ONNX Runtime at each batch size, its core time per row from
	// this process's CPU.
	raws := map[int][2]float64{} // rows/s, core µs a row
	for _, rows := range []int{4096, 256} {
		fmt.Fprintf(os.Stderr, "bench: json raw, %d rows\n", rows)
		cpu0 := selfCPU()
		start := time.Now()
		rate, err := measureRaw(e.modelPath(mlp), mlp, rows, plan, d)
		if err != nil {
			return "", err
		}
		// Sessions are made before the window: the CPU over the whole
		// call, spread over the rows the window counted plus the time
		// outside it at the same rate.
		wall := time.Since(start).Seconds()
		raws[rows] = [2]float64{rate, (selfCPU() - cpu0).Seconds() / (rate * wall) * 1e6}
	}

	// The whole trip, 2 callers in a closed loop, this binary and the
	// baseline.
	type trip struct {
		rate, p99 float64 // rows/s, ms
		cpuPerRow float64 // server core µs a row
		allocs    float64 // server allocations a row
		err       error
	}
	measure := func(binary string, sh jsonShape) trip {
		p, err := e.serveWith(binary, nil, mlp.name)
		if err != nil {
			return trip{err: err}
		}
		defer p.stop()
		var cpu0, cpu1 time.Duration
		var m0, m1 float64
		st := closedLoop(p.host, sh.body, 2, d, func(open bool) {
			if open {
				cpu0, m0 = cpuOf(p), metricOr0(p, "go_memstats_mallocs_total")
			} else {
				cpu1, m1 = cpuOf(p), metricOr0(p, "go_memstats_mallocs_total")
			}
		})
		if n := st.Others(); n > 0 {
			return trip{err: fmt.Errorf("%d requests failed: %v", n, st.Statuses)}
		}
		rows := float64(len(st.OK) * sh.rows)
		return trip{rate: st.OKPerSecond() * float64(sh.rows), p99: percentile(st.OK, 0.99).Seconds() * 1e3,
			cpuPerRow: (cpu1 - cpu0).Seconds() / rows * 1e6, allocs: (m1 - m0) / rows}
	}
	now, base := make([]trip, len(shapes)), make([]trip, len(shapes))
	for k, sh := range shapes {
		fmt.Fprintf(os.Stderr, "bench: json end to end, %s\n", sh)
		now[k] = measure(e.o.binary, sh)
		if now[k].err != nil {
			return "", fmt.Errorf("%s: %w", sh, now[k].err)
		}
		if baseErr == nil {
			base[k] = measure(baseline, sh)
		}
	}

	// One 4096-row request at a time, the server on one core and on all.
	fmt.Fprintf(os.Stderr, "bench: json single request latency\n")
	single := map[string][2]time.Duration{}
	for _, sh := range shapes[:2] {
		var lat [2]time.Duration
		for i, environ := range [][]string{{"GOMAXPROCS=1"}, {"GOMAXPROCS=" + strconv.Itoa(cores)}} {
			p, err := e.serveWith(e.o.binary, environ, mlp.name)
			if err != nil {
				return "", err
			}
			st := closedLoop(p.host, sh.body, 1, d/2, nil)
			p.stop()
			if n := st.Others(); n > 0 {
				return "", fmt.Errorf("single request: %d failed: %v", n, st.Statuses)
			}
			lat[i] = percentile(st.OK, 0.5)
		}
		single[sh.String()] = lat
	}

	var out strings.Builder
	fmt.Fprintf(&out, "## The gateway's JSON\n\n")
	fmt.Fprintf(&out, "The MLP (64 floats in, 8 out). Gateway requests of 4096 and 256 rows, each row flat (`[row, v0, ..., v63]`) or wide (`[row, {\"x_0\": v0, ..., \"x_63\": v63}]`, as a warehouse sends a table's columns by name), float32 values as Go prints them shortest (`-0.83245695`). ")
	fmt.Fprintf(&out, "Decode and encode alone: the server's own code in this process (%d cores: a large body cut into parts on idle cores), each the median of 3 rounds of %s interleaved over the shapes; per core is per second of this process's CPU time (the parts and the garbage collector included), all cores per second; allocations a row while decoding in order. ", cores, d/4)
	fmt.Fprintf(&out, "End to end: 2 callers in a closed loop on `/predict` for %s after 1 s of warm-up, default flags; server core time and allocations a row from its /proc and /metrics over the window. ", d)
	if baseErr == nil {
		fmt.Fprintf(&out, "Baseline: the binary of commit %s (before this work), built by the bench from git, same flags, same run. ", baselineCommit)
	} else {
		fmt.Fprintf(&out, "Baseline: not measured (%v). ", baseErr)
	}
	fmt.Fprintf(&out, "Raw: ONNX Runtime in-process, %d×%d sessions, tensors bound once, calls of the request's rows.\n\n", plan.Workers, plan.IntraOpThreads)

	fmt.Fprintln(&out, "| request | JSON in | decode MB/s a core | decode MB/s, all cores | allocations a row (decode) | JSON out | encode MB/s a core |")
	fmt.Fprintln(&out, "|---|---:|---:|---:|---:|---:|---:|")
	for k, sh := range shapes {
		st := stages[k]
		mb := float64(len(sh.body)) / 1e6
		fmt.Fprintf(&out, "| %s | %.2f MB | %.0f | %.0f | %.4f | %.2f MB | %.0f |\n", sh, mb, st.decode1*mb, st.decodeAll*mb,
			st.allocsPerRow, float64(st.answer)/1e6, st.encode1*float64(st.answer)/1e6)
	}
	fmt.Fprintln(&out)
	fmt.Fprintln(&out, "| request | raw rows/s | rows/s | ÷ raw | p99 | baseline rows/s | baseline p99 | ÷ baseline | server core µs a row: all | decode | model | encode | beyond them | allocations a row |")
	fmt.Fprintln(&out, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
	var verdicts []string
	for k, sh := range shapes {
		n, bs, raw, st := now[k], base[k], raws[sh.rows], stages[k]
		dec, enc := 1e6/(st.decode1*float64(sh.rows)), 1e6/(st.encode1*float64(sh.rows))
		beyond := n.cpuPerRow - dec - raw[1] - enc
		baseCells := "| — | — | —"
		if baseErr == nil && bs.err == nil {
			baseCells = fmt.Sprintf("| %.0f | %.1f ms | %.2f×", bs.rate, bs.p99, n.rate/bs.rate)
			if sh.rows == 4096 {
				verdicts = append(verdicts, fmt.Sprintf("end to end ≥ 2× the baseline, %s: %.2f× %s", sh, n.rate/bs.rate, verdict(n.rate >= 2*bs.rate)))
			}
		} else if bs.err != nil {
			baseCells = fmt.Sprintf("| failed: %v | | ", bs.err)
		}
		fmt.Fprintf(&out, "| %s | %.0f | %.0f | %.2f | %.1f ms %s | %.2f | %.2f | %.2f | %.2f | %.2f (%.0f%%) | %.3f |\n", sh, raw[0], n.rate, n.rate/raw[0], n.p99,
			baseCells, n.cpuPerRow, dec, raw[1], enc, beyond, 100*beyond/n.cpuPerRow, n.allocs)
		verdicts = append(verdicts, fmt.Sprintf("decode ≥ 700 MB/s a core, %s: %.0f %s", sh, st.decode1*float64(len(sh.body))/1e6, verdict(st.decode1*float64(len(sh.body))/1e6 >= 700)))
		verdicts = append(verdicts, fmt.Sprintf("time beyond decode, model and encode ≤ 25%%, %s: %.0f%% %s", sh, 100*beyond/n.cpuPerRow, verdict(beyond <= 0.25*n.cpuPerRow)))
		verdicts = append(verdicts, fmt.Sprintf("allocations a row < 0.01 end to end, %s: %.3f %s", sh, n.allocs, verdict(n.allocs < 0.01)))
	}
	fmt.Fprintln(&out)
	fmt.Fprintln(&out, "One request at a time (1 caller), median latency:")
	fmt.Fprintln(&out)
	fmt.Fprintf(&out, "| request | server GOMAXPROCS 1 | GOMAXPROCS %d | ratio |\n|---|---:|---:|---:|\n", cores)
	for _, sh := range shapes[:2] {
		lat := single[sh.String()]
		fmt.Fprintf(&out, "| %s | %s | %s | %.2f× |\n", sh, short(lat[0]), short(lat[1]), lat[0].Seconds()/lat[1].Seconds())
		verdicts = append(verdicts, fmt.Sprintf("one request's latency falls with more cores, %s: %s → %s %s", sh, short(lat[0]), short(lat[1]), verdict(lat[1] < lat[0])))
	}
	fmt.Fprintf(&out, "\nTargets:\n\n")
	for _, v := range verdicts {
		fmt.Fprintf(&out, "- %s\n", v)
	}
	return out.String(), nil
}

// buildBaseline builds the modelserve binary of baselineCommit from this
// checkout's git history into the bench's work folder.
func buildBaseline(e *env) (string, error) {
	src := filepath.Join(e.work, "baseline-src")
	if err := os.MkdirAll(src, 0o755); err != nil {
		return "", err
	}
	archive := exec.Command("git", "archive", "--format=tar", baselineCommit)
	tar := exec.Command("tar", "-x", "-C", src)
	pipe, err := archive.StdoutPipe()
	if err != nil {
		return "", err
	}
	tar.Stdin = pipe
	var stderr bytes.Buffer
	archive.Stderr = &stderr
	if err := tar.Start(); err != nil {
		return "", err
	}
	if err := archive.Run(); err != nil {
		tar.Wait()
		return "", fmt.Errorf("git archive %s (a shallow clone lacks it): %v %s", baselineCommit, err, strings.TrimSpace(stderr.String()))
	}
	if err := tar.Wait(); err != nil {
		return "", err
	}
	bin := filepath.Join(e.work, "modelserve-baseline")
	build := exec.Command("go", "build", "-trimpath", "-o", bin, "./cmd/modelserve")
	build.Dir = src
	build.Env = os.Environ()
	if os.Getenv("CGO_CFLAGS") == "" {
		build.Env = append(build.Env, "CGO_CFLAGS=-O2 -g -Wno-deprecated-declarations")
	}
	if out, err := build.CombinedOutput(); err != nil {
		return "", errors.New("building the baseline: " + strings.TrimSpace(string(out)))
	}
	return bin, nil
}

// median is the middle of xs (which it sorts).
func median(xs []float64) float64 {
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// metricOr0 is a server metric's value now, 0 if it cannot be read.
func metricOr0(p *process, name string) float64 {
	v, _ := p.metric(name)
	return v
}

// wideBody rewrites a body of flat MLP rows ([row, v0, ..., v63]) as
// wide ones ([row, {"x_0": v0, ..., "x_63": v63}]).
func wideBody(flat []byte) []byte {
	d := json.NewDecoder(bytes.NewReader(flat))
	d.UseNumber()
	var v struct{ Data [][]json.Number }
	if d.Decode(&v) != nil {
		return nil
	}
	b := []byte(`{"data":[`)
	for r, row := range v.Data {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = append(b, row[0]...)
		b = append(b, ",{"...)
		for j, x := range row[1:] {
			if j > 0 {
				b = append(b, ',')
			}
			b = append(b, `"x_`...)
			b = strconv.AppendInt(b, int64(j), 10)
			b = append(b, `":`...)
			b = append(b, x...)
		}
		b = append(b, "}]"...)
	}
	return append(b, "]}"...)
}

// perSecondAndCore runs f in a loop for d (after a warm-up) and returns
// its rate per second and per second of this process's CPU time (every
// goroutine it starts and the garbage collector's work included).
func perSecondAndCore(d time.Duration, f func() error) (wall, cpu float64) {
	for range 3 {
		if f() != nil {
			return 0, 0
		}
	}
	n := 0
	start, cpu0 := time.Now(), selfCPU()
	for time.Since(start) < d {
		if f() != nil {
			return 0, 0
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), float64(n) / (selfCPU() - cpu0).Seconds()
}
