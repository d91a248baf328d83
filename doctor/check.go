package doctor

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/internal/loadgen"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/onnxrt"
	"github.com/modelserve/modelserve/registry"
	"github.com/modelserve/modelserve/server"
)

// Options are what Check runs, and on which device.
type Options struct {
	// Targets are registered versions to check; Files ONNX files, which
	// Check registers in a scratch registry.
	Targets []Target
	Files   []string
	// Batches are the request sizes, in rows, raw ONNX Runtime and
	// /predict are measured at.
	Batches []int
	// Duration is how long each measurement lasts (longer when one call
	// takes longer); Callers the concurrent 1-row callers of the batching
	// and flood measurements.
	Duration time.Duration
	Callers  int
	// Out, when set, also gets the report.
	Out string
	// Engine are the options serve would run the models with; its
	// Device is what was asked (auto, cpu or cuda).
	Engine engine.Options
	// Version is modelserve's, for the report.
	Version string
}

// Target is a registered version to check.
type Target struct {
	Reg *registry.Registry
	registry.Version
	// Source is the file given, or the version's file.
	Source string
}

// checkRows is the admissible size, in rows, the admission check narrows
// the device's (or host's) memory to.
const checkRows = 1024

// Check is doctor --run: it loads each model on the device serve would
// choose, measures it raw and through a real server on loopback, and
// checks what admission does with a request too large for the memory and
// with a flood. The report is markdown; an error means a check failed.
func Check(ctx context.Context, out io.Writer, o Options) error {
	device := o.Engine.Device
	if o.Callers < 1 || o.Duration <= 0 || len(o.Batches) == 0 {
		return fmt.Errorf("--callers, --duration and --batch-sizes must be positive")
	}
	if len(o.Targets)+len(o.Files) == 0 {
		return fmt.Errorf("doctor --run needs a model: --model NAME[:VERSION] or --model-file FILE.onnx (make gpu-check generates the encoder and the DLRM-like model and checks both)")
	}
	// Say at once, before loading anything, when there is no GPU to check.
	var inv gpu.Inventory
	if device != engine.CPU {
		inv = gpu.Discover(gpu.NewNVML(), os.LookupEnv)
		if len(inv.Devices) == 0 {
			return fmt.Errorf("no GPU to check on this machine: %s (--device cpu runs the same check on the CPU)", inv.Why())
		}
		device = engine.CUDA // a GPU is there: the check is of the GPU, never of a fallback
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rt, err := onnxrt.Load("")
	if err != nil {
		return err
	}
	targets, cleanup, err := withFiles(ctx, o, rt)
	defer cleanup()
	if err != nil {
		return err
	}

	var watch *gpu.Monitor
	if device == engine.CUDA {
		if watch, err = gpu.NewMonitor(gpu.NewNVML(), inv, log); err != nil {
			return fmt.Errorf("sampling the GPUs: %w", err)
		}
		defer watch.Close()
	}
	var report bytes.Buffer
	w := io.MultiWriter(out, &report)
	fmt.Fprintf(w, "# modelserve doctor --run, %s\n\n", time.Now().UTC().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(w, "modelserve %s (%s, %d CPUs); ONNX Runtime %s from %s\n", o.Version, runtime.Version(), runtime.GOMAXPROCS(0), rt.Version, rt.LibraryPath)
	if device == engine.CUDA {
		fmt.Fprintf(w, "\nNVIDIA driver %s, CUDA %s; ", inv.Driver.Version, inv.Driver.CUDA())
		for i, d := range inv.Devices {
			if i > 0 {
				fmt.Fprint(w, ", ")
			}
			fmt.Fprintf(w, "GPU %d: %s (%s)", d.Index, d.Name, bytesize.Format(int64(d.MemoryTotal)))
		}
		fmt.Fprintln(w)
	}

	var failures []string
	for _, t := range targets {
		fs := checkModel(ctx, w, t, o, device, watch, len(inv.Devices), log)
		for _, f := range fs {
			failures = append(failures, t.Ref()+": "+f)
		}
	}
	if device == engine.CUDA {
		if deps, err := rt.PrepareProvider("cuda"); err == nil && len(deps) > 0 {
			fmt.Fprintf(w, "\nCUDA libraries the provider loaded:\n\n")
			for _, d := range deps {
				where := "not found"
				if d.Path != "" {
					where = d.Path + " (" + d.Source + ")"
				}
				fmt.Fprintf(w, "- %s: %s\n", d.Name, where)
			}
		}
	}
	if len(failures) == 0 {
		fmt.Fprintf(w, "\n**Result: pass** (%d model(s) on %s)\n", len(targets), device)
	} else {
		fmt.Fprintf(w, "\n**Result: FAIL**\n\n")
		for _, f := range failures {
			fmt.Fprintf(w, "- %s\n", f)
		}
	}
	if o.Out != "" {
		if err := os.WriteFile(o.Out, report.Bytes(), 0o644); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
	}
	if len(failures) > 0 {
		return fmt.Errorf("doctor --run: %d check(s) failed", len(failures))
	}
	return nil
}

// withFiles is the targets with the files registered in a scratch
// registry (removed by cleanup).
func withFiles(ctx context.Context, o Options, rt *onnxrt.Runtime) ([]Target, func(), error) {
	var scratch string
	cleanup := func() {
		if scratch != "" {
			os.RemoveAll(scratch)
		}
	}
	targets := slices.Clone(o.Targets)
	if len(o.Files) > 0 {
		var err error
		if scratch, err = os.MkdirTemp("", "modelserve-check-"); err != nil {
			return nil, cleanup, err
		}
		reg, err := registry.Open(scratch, rt)
		if err != nil {
			return nil, cleanup, err
		}
		for i, f := range o.Files {
			name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
			if model.CheckName(model.ModelName, name) != nil {
				name = fmt.Sprintf("model%d", i+1)
			}
			v, err := reg.Log(ctx, registry.LogRequest{Name: name, Version: "1", File: f, Comment: "doctor --run"})
			if err != nil {
				return nil, cleanup, fmt.Errorf("--model-file %s: %w", f, err)
			}
			targets = append(targets, Target{reg, v, f})
		}
	}
	return targets, cleanup, nil
}

// checkModel runs every measurement of one model, writes its tables, and
// returns what failed.
func checkModel(ctx context.Context, w io.Writer, t Target, o Options, device engine.Device, watch *gpu.Monitor, gpus int,
	log *slog.Logger) (failures []string) {
	batches := o.Batches
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	fmt.Fprintf(w, "\n## %s (%s, %s)\n\n", t.Ref(), t.Source, bytesize.Format(t.Size))

	eo := o.Engine
	eo.Device = device
	eo.GPU.SampleInterval = 250 * time.Millisecond

	metrics := prometheus.NewRegistry()
	rec, err := panics.New(metrics)
	if err != nil {
		fail("%v", err)
		return failures
	}
	before := memoryInUse(watch, gpus)
	start := time.Now()
	m, err := engine.Start(ctx, t.Reg, t.Version, eo, engine.Env{Log: log, Metrics: metrics, Panics: rec})
	if err != nil {
		fail("loading: %v", err)
		fmt.Fprintf(w, "Loading failed: %v\n", err)
		return failures
	}
	defer m.Close(context.Background())
	loadTime := time.Since(start)
	after := memoryInUse(watch, gpus)

	srv, err := server.New(server.Config{Models: []server.Model{{Name: t.Name, Signature: t.Signature}}, Log: log, Gatherer: metrics, Registerer: metrics, Panics: rec,
		MaxBodyBytes: server.DefaultMaxBodyBytes, RequestTimeout: 10 * time.Minute, MaxRequestTimeout: 10 * time.Minute})
	if err != nil {
		fail("starting the server: %v", err)
		return failures
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fail("listening on loopback: %v", err)
		return failures
	}
	go srv.Serve(ln)
	defer srv.Shutdown(context.Background())
	base := "http://" + ln.Addr().String()
	route := base + t.Signature.DefaultFunction().Path()

	var scrape *gpuScrape
	if device == engine.CUDA {
		scrape = startScrape(base+"/metrics", 250*time.Millisecond)
		defer scrape.stop()
	}

	// Workers: the device and provider each one really runs on.
	fmt.Fprintf(w, "| check | measured | verdict |\n|---|---|---|\n")
	workerInfo := labelsOf(metrics, "modelserve_worker_info", "worker", "device", "provider")
	wantProvider := engine.ProviderCPU
	if device == engine.CUDA {
		wantProvider = engine.ProviderCUDA
	}
	var desc []string
	wrong := 0
	for _, l := range workerInfo {
		desc = append(desc, fmt.Sprintf("%s: %s %s", l[0], l[1], l[2]))
		if l[2] != wantProvider {
			wrong++
		}
	}
	v := verdict(wrong == 0 && len(workerInfo) > 0)
	if wrong > 0 || len(workerInfo) == 0 {
		fail("%d of %d workers are not on %s", wrong, len(workerInfo), wantProvider)
	}
	plan := m.Placement()
	fmt.Fprintf(w, "| workers (%d × %d intra-op threads) | %s | %s |\n", plan.Workers, plan.IntraOpThreads, strings.Join(desc, "; "), v)
	fmt.Fprintf(w, "| load, warm-up included | %s | |\n", loadTime.Round(time.Millisecond))

	maxBatch := slices.Max(batches)
	inputs, err := randomInputs(t.Signature.Inputs, max(maxBatch, 4*checkRows))
	if err != nil {
		fail("making inputs: %v", err)
		return failures
	}

	qA, err := m.Admit(eo.Admission, prometheus.NewRegistry())
	if err != nil {
		fail("admission: %v", err)
		return failures
	}
	defer qA.Close()
	srv.SetAdmitter(t.Name, qA)

	// A first request proves the route answers every row.
	if err := checkAnswer(route, gatewayBody(inputs, min(8, maxBatch)), min(8, maxBatch)); err != nil {
		fail("%v", err)
	}

	// Throughput: raw sessions against the server, at each size.
	var rows bytes.Buffer
	fmt.Fprintf(&rows, "\n| rows per request | raw ONNX Runtime rows/s | /predict rows/s | ÷ raw | callers | p50 | p99 | 429s | other answers |\n|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	target := qA.Limits().MaxQueueWait
	for _, b := range batches {
		in := sliceRows(inputs, b)
		raw, err := rawRate(ctx, m, plan.Workers, in, o.Duration)
		if err != nil {
			fail("raw ONNX Runtime at %d rows: %v", b, err)
			continue
		}
		// Enough callers to keep every worker busy; one for a request
		// whose own work passes the queue's wait target, which admission
		// lets in only when nothing waits ahead.
		conns := plan.Workers + 1
		switch {
		case b == 1:
			conns = max(16, 4*plan.Workers)
		case qA.Estimate(b) > target:
			conns = 1
		}
		est := time.Duration(float64(time.Second) * float64(b*conns) / raw)
		tg, err := loadgen.NewTarget(route, conns)
		if err != nil {
			fail("%v", err)
			continue
		}
		tg.Backoff = 2 * time.Millisecond
		st := tg.Closed(gatewayBody(inputs, b), conns, max(500*time.Millisecond, est), max(o.Duration, 2*est), nil)
		served := st.OKPerSecond() * float64(b)
		if st.Others() > 0 || len(st.OK) == 0 {
			fail("/predict at %d rows: %d answered, other answers %v", b, len(st.OK), st.Statuses)
		}
		fmt.Fprintf(&rows, "| %d | %.0f | %.0f | %.2f | %d | %s | %s | %d | %d |\n", b, raw, served, served/raw, conns,
			short(loadgen.Percentile(st.OK, 0.5)), short(loadgen.Percentile(st.OK, 0.99)), len(st.Rejected), st.Others())
	}
	fmt.Fprintf(&rows, "\nRaw: the server's own workers called in-process with calls of the request's size, one goroutine each, no HTTP and no admission. /predict: the same workers behind HTTP on loopback, each request cut into calls of at most %d rows; callers in a closed loop (a 429 is retried after 2 ms); a request whose own work passes the queue's wait target (%v) runs alone, so it gets one caller.\n",
		qA.Limits().MaxBatchRows, target.Round(time.Microsecond))

	// Batching: callers of one row each, with dynamic batching on and off.
	fmt.Fprintf(&rows, "\n| %d callers of 1 row | requests/s | mean rows per ONNX Runtime call | p50 | p99 | answers other than 200 |\n|---|---:|---:|---:|---:|---:|\n", o.Callers)
	one := gatewayBody(inputs, 1)
	var on, off float64
	for _, cell := range []struct {
		label string
		rows  int
	}{{"batching on (defaults)", 0}, {"batching off (--max-batch-rows 1)", 1}} {
		co := eo.Admission
		co.MaxBatchRows = cell.rows
		reg := prometheus.NewRegistry()
		q, err := m.Admit(co, reg)
		if err != nil {
			fail("%s: %v", cell.label, err)
			continue
		}
		srv.SetAdmitter(t.Name, q)
		tg, err := loadgen.NewTarget(route, o.Callers)
		if err != nil {
			fail("%v", err)
			continue
		}
		var sum0, n0, sum1, n1 float64
		tg.Backoff = 2 * time.Millisecond
		st := tg.Closed(one, o.Callers, time.Second, o.Duration, func(open bool) {
			if open {
				sum0, n0 = histogram(reg, "modelserve_batch_rows")
			} else {
				sum1, n1 = histogram(reg, "modelserve_batch_rows")
			}
		})
		srv.SetAdmitter(t.Name, qA)
		q.Close()
		if st.Others() > 0 || len(st.OK) == 0 {
			fail("%s: %d answered, other answers %v", cell.label, len(st.OK), st.Statuses)
		}
		if cell.rows == 1 {
			off = st.OKPerSecond()
		} else {
			on = st.OKPerSecond()
		}
		fmt.Fprintf(&rows, "| %s | %.0f | %.1f | %s | %s | %d |\n", cell.label, st.OKPerSecond(), (sum1-sum0)/max(n1-n0, 1),
			short(loadgen.Percentile(st.OK, 0.5)), short(loadgen.Percentile(st.OK, 0.99)), len(st.Rejected)+st.Others())
	}

	// Admission: memory narrowed to checkRows rows, then a request four
	// times that and a flood of callers.
	adm, admFailures := checkAdmission(m, eo, device, inputs, route, o, srv, qA)
	failures = append(failures, admFailures...)

	// Memory.
	peak, peakNote := after, ""
	if scrape != nil {
		peak = max(peak, scrape.memory.Load())
	} else if p, err := engine.PeakResidentBytes(); err == nil {
		peak, peakNote = p, " (the process's, raw calls and earlier models included)"
	}
	what := "host memory (resident)"
	perRow := fmt.Sprintf("%s a row by admission's count (inputs and outputs)", bytesize.Format(t.Signature.RowBytes()))
	if device == engine.CUDA {
		what = "device memory (used, all processes)"
		perRow = fmt.Sprintf("%s a row, measured at load (a 64-row batch's growth)", bytesize.Format(m.DeviceBytesPerRow()))
		if m.DeviceBytesPerRow() == 0 {
			perRow = "no growth at load to measure; admission counts 4× the row's bytes"
		}
	}
	change := "+" + bytesize.Format(after-before)
	if after < before {
		change = "−" + bytesize.Format(before-after)
	}
	fmt.Fprintf(w, "| %s | before load %s, after %s (%s), peak %s%s; %s | |\n", what, bytesize.Format(before), bytesize.Format(after),
		change, bytesize.Format(peak), peakNote, perRow)
	if scrape != nil {
		util, power, n := scrape.utilization.Load(), scrape.power.Load(), scrape.samples.Load()
		ok := util > 0
		if !ok {
			fail("GPU utilization stayed at 0 under load (%d samples of /metrics)", n)
		}
		fmt.Fprintf(w, "| GPU metrics read from /metrics under load | utilization up to %d%%, memory up to %s, power up to %.0f W (%d scrapes) | %s |\n",
			util, bytesize.Format(scrape.memory.Load()), float64(power)/1000, n, verdict(ok))
	}
	if on > 0 && off > 0 {
		fmt.Fprintf(w, "| dynamic batching, %d callers of 1 row | %.2f× the requests/s of batching off | |\n", o.Callers, on/off)
	}
	fmt.Fprint(w, adm)
	n := counterSum(metrics, "modelserve_panics_total")
	fmt.Fprintf(w, "| panics recovered | %.0f | %s |\n", n, verdict(n == 0))
	if n > 0 {
		fail("%.0f panics recovered", n)
	}
	w.Write(rows.Bytes())
	return failures
}
