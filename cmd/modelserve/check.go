package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	pmodel "github.com/prometheus/common/model"
	"github.com/spf13/pflag"
	"github.com/valyala/fasthttp"

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

// checkOptions are doctor --run's own flags.
type checkOptions struct {
	models   []string // registry references
	files    []string // ONNX files, registered in a scratch registry
	batches  string
	duration time.Duration
	callers  int
	out      string
}

func (c *checkOptions) flags(f *pflag.FlagSet) {
	f.StringArrayVar(&c.models, "model", nil, "with --run: a registered model to check, NAME[:VERSION] (repeatable)")
	f.StringArrayVar(&c.files, "model-file", nil, "with --run: an ONNX file to check, registered in a scratch registry (repeatable)")
	f.StringVar(&c.batches, "batch-sizes", "1,64,4096", "with --run: the request sizes, in rows, raw ONNX Runtime and /predict are measured at")
	f.DurationVar(&c.duration, "duration", 3*time.Second, "with --run: how long each measurement lasts (longer when one call takes longer)")
	f.IntVar(&c.callers, "callers", 64, "with --run: concurrent 1-row callers in the batching and flood measurements")
	f.StringVar(&c.out, "out", "", "with --run: also write the report to this file")
}

// checkRows is the admissible size, in rows, the admission check narrows
// the device's (or host's) memory to.
const checkRows = 1024

// runCheck is doctor --run: it loads each model on the device serve would
// choose, measures it raw and through a real server on loopback, and
// checks what admission does with a request too large for the memory and
// with a flood. The report is markdown; an error means a check failed.
func runCheck(ctx context.Context, out io.Writer, g *globals, o *doctorOptions) error {
	c := &o.check
	device, err := engine.ParseDevice(o.device)
	if err != nil {
		return err
	}
	batches, err := parseBatches(c.batches)
	if err != nil {
		return err
	}
	if c.callers < 1 || c.duration <= 0 {
		return fmt.Errorf("--callers and --duration must be positive")
	}
	if len(c.models)+len(c.files) == 0 {
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
	targets, cleanup, err := checkTargets(ctx, g, c, rt)
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
	fmt.Fprintf(w, "modelserve %s (%s, %d CPUs); ONNX Runtime %s from %s\n", version, runtime.Version(), runtime.GOMAXPROCS(0), rt.Version, rt.LibraryPath)
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
		fs := checkModel(ctx, w, t, o, device, watch, len(inv.Devices), batches, log)
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
	if c.out != "" {
		if err := os.WriteFile(c.out, report.Bytes(), 0o644); err != nil {
			return fmt.Errorf("writing the report: %w", err)
		}
	}
	if len(failures) > 0 {
		return fmt.Errorf("doctor --run: %d check(s) failed", len(failures))
	}
	return nil
}

func parseBatches(s string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 1 || n > 1<<20 {
			return nil, fmt.Errorf("--batch-sizes %q: give row counts from 1 to 1048576, separated by commas", s)
		}
		out = append(out, n)
	}
	return out, nil
}

// checkTarget is a version to check and the registry holding it.
type checkTarget struct {
	reg *registry.Registry
	registry.Version
	source string // the file given, or the version's file
}

// checkTargets resolves --model references and registers --model-file
// files in a scratch registry (removed by cleanup).
func checkTargets(ctx context.Context, g *globals, c *checkOptions, rt *onnxrt.Runtime) ([]checkTarget, func(), error) {
	var releases []func() error
	var scratch string
	cleanup := func() {
		for _, r := range releases {
			r()
		}
		if scratch != "" {
			os.RemoveAll(scratch)
		}
	}
	var targets []checkTarget
	for _, ref := range c.models {
		reg, v, release, err := g.use(ref)
		if err != nil {
			return nil, cleanup, err
		}
		releases = append(releases, release)
		targets = append(targets, checkTarget{reg, v, v.ModelPath()})
	}
	if len(c.files) > 0 {
		var err error
		if scratch, err = os.MkdirTemp("", "modelserve-check-"); err != nil {
			return nil, cleanup, err
		}
		reg, err := registry.Open(scratch, rt)
		if err != nil {
			return nil, cleanup, err
		}
		for i, f := range c.files {
			name := strings.TrimSuffix(filepath.Base(f), filepath.Ext(f))
			if model.CheckName(model.ModelName, name) != nil {
				name = fmt.Sprintf("model%d", i+1)
			}
			v, err := reg.Log(ctx, registry.LogRequest{Name: name, Version: "1", File: f, Comment: "doctor --run"})
			if err != nil {
				return nil, cleanup, fmt.Errorf("--model-file %s: %w", f, err)
			}
			targets = append(targets, checkTarget{reg, v, f})
		}
	}
	return targets, cleanup, nil
}

// checkModel runs every measurement of one model, writes its tables, and
// returns what failed.
func checkModel(ctx context.Context, w io.Writer, t checkTarget, o *doctorOptions, device engine.Device, watch *gpu.Monitor, gpus int,
	batches []int, log *slog.Logger) (failures []string) {
	c := &o.check
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	fmt.Fprintf(w, "\n## %s (%s, %s)\n\n", t.Ref(), t.source, bytesize.Format(t.Size))

	flags := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	so := newServeOptions(flags)
	so.device, so.workers, so.workersPerGPU, so.intraOp = string(device), o.workers, o.workersPerGPU, o.intraOp
	so.gpuSampleInterval = 250 * time.Millisecond
	eo, err := so.engine(flags)
	if err != nil {
		fail("%v", err)
		return failures
	}

	metrics := prometheus.NewRegistry()
	rec, err := panics.New(metrics)
	if err != nil {
		fail("%v", err)
		return failures
	}
	before := memoryInUse(watch, gpus)
	start := time.Now()
	m, err := engine.Start(ctx, t.reg, t.Version, eo, engine.Env{Log: log, Metrics: metrics, Panics: rec})
	if err != nil {
		fail("loading: %v", err)
		fmt.Fprintf(w, "Loading failed: %v\n", err)
		return failures
	}
	defer m.Close(context.Background())
	loadTime := time.Since(start)
	after := memoryInUse(watch, gpus)

	srv, err := server.New(server.Config{Models: []server.Model{{Name: t.Name, Signature: t.Signature}}, Log: log, Gatherer: metrics, Registerer: metrics, Panics: rec,
		MaxBodyBytes: int(so.maxBodyBytes), RequestTimeout: 10 * time.Minute, MaxRequestTimeout: 10 * time.Minute})
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
		raw, err := rawRate(ctx, m, plan.Workers, in, c.duration)
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
		st := tg.Closed(gatewayBody(inputs, b), conns, max(500*time.Millisecond, est), max(c.duration, 2*est), nil)
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
	fmt.Fprintf(&rows, "\n| %d callers of 1 row | requests/s | mean rows per ONNX Runtime call | p50 | p99 | answers other than 200 |\n|---|---:|---:|---:|---:|---:|\n", c.callers)
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
		tg, err := loadgen.NewTarget(route, c.callers)
		if err != nil {
			fail("%v", err)
			continue
		}
		var sum0, n0, sum1, n1 float64
		tg.Backoff = 2 * time.Millisecond
		st := tg.Closed(one, c.callers, time.Second, c.duration, func(open bool) {
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
	adm, admFailures := checkAdmission(m, eo, device, inputs, route, c, srv, qA)
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
		fmt.Fprintf(w, "| dynamic batching, %d callers of 1 row | %.2f× the requests/s of batching off | |\n", c.callers, on/off)
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

// checkAdmission narrows the memory admission may fill to about
// checkRows rows (the GPU's free memory less a margin, or the host's
// budget on the CPU), then sends one request of four times that and a
// flood of callers: every answer must be 200, 413 or 429, never a failure
// (a CUDA out-of-memory error reaching a caller).
func checkAdmission(m *engine.Workers, eo engine.Options, device engine.Device, inputs []model.Tensor, route string, c *checkOptions,
	srv *server.Server, restore server.Admitter) (table string, failures []string) {
	fail := func(format string, args ...any) { failures = append(failures, fmt.Sprintf(format, args...)) }
	var b strings.Builder
	var narrowed string
	sig := m.Version().Signature
	if device == engine.CUDA && m.Monitor() != nil {
		deviceRow, _ := m.DeviceRowBytes()
		s, ok := m.Monitor().Latest(m.Placement().GPUs[0])
		if !ok || s.MemoryTotal == 0 {
			fail("the GPU does not answer NVML")
			return "", failures
		}
		room := uint64(checkRows * deviceRow)
		eo.GPU.MemoryMargin = max(0, float64(s.MemoryFree-min(room, s.MemoryFree))/float64(s.MemoryTotal))
		narrowed = fmt.Sprintf("GPU memory narrowed to about %d rows (%s of %s free, at %s a row)", checkRows,
			bytesize.Format(int64(room)), bytesize.Format(int64(s.MemoryFree)), bytesize.Format(deviceRow))
	} else {
		budget := int64(len(gatewayBody(inputs, checkRows))) + checkRows*sig.RowBytes()
		eo.Admission.MemoryBudget = budget
		narrowed = fmt.Sprintf("memory budget narrowed to about %d rows (%s)", checkRows, bytesize.Format(budget))
	}
	q, err := m.AdmitWith(eo, prometheus.NewRegistry())
	if err != nil {
		fail("admission narrowed to %d rows: %v", checkRows, err)
		return "", failures
	}
	srv.SetAdmitter(m.Version().Name, q)
	defer func() {
		srv.SetAdmitter(m.Version().Name, restore)
		q.Close()
	}()

	big := 4 * checkRows
	tg, err := loadgen.NewTarget(route, c.callers)
	if err != nil {
		fail("%v", err)
		return "", failures
	}
	req, resp := tg.Request(gatewayBody(inputs, big)), fasthttp.AcquireResponse()
	start := time.Now()
	err = tg.Do(req, resp)
	took := time.Since(start)
	status, msg := resp.StatusCode(), errorText(resp.Body())
	fasthttp.ReleaseRequest(req)
	fasthttp.ReleaseResponse(resp)
	refused := err == nil && (status == fasthttp.StatusRequestEntityTooLarge || status == fasthttp.StatusTooManyRequests)
	if !refused {
		fail("a request of %d rows with room for %d: got %d %s (err %v), want 413 or 429", big, checkRows, status, msg, err)
	}
	fmt.Fprintf(&b, "| admission, a request of %d rows (%s) | %d in %s: %s | %s |\n", big, narrowed, status, short(took), msg, verdict(refused))

	flood := checkRows / 8
	tg.Backoff = 2 * time.Millisecond
	st := tg.Closed(gatewayBody(inputs, flood), c.callers, 0, c.duration, nil)
	var codes []string
	for code, n := range st.Statuses {
		codes = append(codes, fmt.Sprintf("%d×%d", n, code))
	}
	slices.Sort(codes)
	ok := st.Others() == 0 && len(st.OK) > 0
	if !ok {
		fail("a flood of %d callers of %d rows: %v and %d transport errors, want only 200 and 429", c.callers, flood, st.Statuses, st.ClientErrors)
	}
	fmt.Fprintf(&b, "| admission, a flood of %d callers of %d rows for %s | %s; p99 of the 200s %s | %s |\n", c.callers, flood, c.duration,
		strings.Join(codes, ", "), short(loadgen.Percentile(st.OK, 0.99)), verdict(ok))
	return b.String(), failures
}

func verdict(ok bool) string {
	if ok {
		return "pass"
	}
	return "**FAIL**"
}

func short(d time.Duration) string { return loadgen.Round(d).String() }

// errorText is the "error" of a JSON answer, shortened; the body itself
// when it is not one.
func errorText(body []byte) string {
	var e struct {
		Error string `json:"error"`
	}
	s := string(body)
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		s = e.Error
	}
	if len(s) > 160 {
		s = s[:160] + "…"
	}
	return strings.ReplaceAll(s, "|", "\\|")
}

// checkAnswer sends one request and checks it is answered 200 with one
// row per row sent, in order.
func checkAnswer(url string, body []byte, rows int) error {
	tg, err := loadgen.NewTarget(url, 1)
	if err != nil {
		return err
	}
	req, resp := tg.Request(body), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	if err := tg.Do(req, resp); err != nil {
		return fmt.Errorf("a first request of %d rows: %w", rows, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("a first request of %d rows: %d %s", rows, resp.StatusCode(), errorText(resp.Body()))
	}
	var answer struct {
		Data [][]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(resp.Body(), &answer); err != nil {
		return fmt.Errorf("a first request of %d rows: the answer is not the gateway's JSON: %w", rows, err)
	}
	if len(answer.Data) != rows {
		return fmt.Errorf("a first request of %d rows: %d rows answered", rows, len(answer.Data))
	}
	for i, r := range answer.Data {
		if len(r) != 2 || string(r[0]) != strconv.Itoa(i) {
			return fmt.Errorf("a first request of %d rows: answer row %d is %s", rows, i, r)
		}
	}
	return nil
}

// rawRate runs in through the workers' sessions from as many goroutines
// as there are workers (n), with no HTTP and no admission: the ceiling /predict
// is held against. Each worker is warmed with one call; then rows are
// counted for d, or, when one call takes longer than d, over one more
// call on every worker.
func rawRate(ctx context.Context, pool *engine.Workers, n int, in []model.Tensor, d time.Duration) (rowsPerSec float64, err error) {
	rows := int64(in[0].Rows())
	each := func(f func(i int) error) error {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = f(i)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err // the workers run the same call: one error says it
			}
		}
		return nil
	}
	start := time.Now()
	if err := each(func(int) error { _, err := pool.Run(ctx, in); return err }); err != nil {
		return 0, err
	}
	if call := time.Since(start); call >= d {
		start = time.Now()
		if err := each(func(int) error { _, err := pool.Run(ctx, in); return err }); err != nil {
			return 0, err
		}
		return float64(int64(n)*rows) / time.Since(start).Seconds(), nil
	}
	var done atomic.Bool
	var total atomic.Int64
	t0 := time.Now()
	time.AfterFunc(d, func() { done.Store(true) })
	err = each(func(int) error {
		for !done.Load() {
			if _, err := pool.Run(ctx, in); err != nil {
				return err
			}
			total.Add(rows)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// Calls that end after the window count, and so does their time.
	return float64(total.Load()) / time.Since(t0).Seconds(), nil
}

// randomInputs makes rows of every input, open dimensions 1: floats in
// [-1, 1), integers 0 to 3 (valid indices for any table of four rows or
// more), booleans, and short strings.
func randomInputs(specs []model.Spec, rows int) ([]model.Tensor, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]model.Tensor, len(specs))
	for i, s := range specs {
		t, err := s.NewRows(rows)
		if err != nil {
			return nil, err
		}
		switch d := t.Data.(type) {
		case []float32:
			for k := range d {
				d[k] = rng.Float32()*2 - 1
			}
		case []float64:
			for k := range d {
				d[k] = rng.Float64()*2 - 1
			}
		case []int8:
			fillInts(d, rng)
		case []int16:
			fillInts(d, rng)
		case []int32:
			fillInts(d, rng)
		case []int64:
			fillInts(d, rng)
		case []uint8:
			fillInts(d, rng)
		case []uint16:
			fillInts(d, rng)
		case []uint32:
			fillInts(d, rng)
		case []uint64:
			fillInts(d, rng)
		case []bool:
			for k := range d {
				d[k] = rng.IntN(2) == 1
			}
		case []string:
			for k := range d {
				d[k] = string(rune('a' + rng.IntN(26)))
			}
		}
		out[i] = t
	}
	return out, nil
}

func fillInts[T int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64](d []T, rng *rand.Rand) {
	for k := range d {
		d[k] = T(rng.IntN(4))
	}
}

func sliceRows(in []model.Tensor, rows int) []model.Tensor {
	out := make([]model.Tensor, len(in))
	for i, t := range in {
		out[i] = t.SliceRows(0, rows)
	}
	return out
}

// gatewayBody writes the first rows of inputs as the gateway sends them:
// {"data": [[row, input1, input2, ...], ...]}, one argument per input.
func gatewayBody(inputs []model.Tensor, rows int) []byte {
	b := []byte(`{"data":[`)
	writers := make([]model.ValueWriter, len(inputs))
	for i, t := range inputs {
		writers[i] = model.JSONWriter(t)
	}
	for r := range rows {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(r), 10)
		for i, t := range inputs {
			b = append(b, ',')
			// Rank-1 inputs take a scalar a row, the others nested arrays
			// of the row's shape, as the gateway sends them.
			b = model.AppendJSONValue(b, writers[i], t.Shape[1:], r*t.RowElements())
		}
		b = append(b, ']')
	}
	return append(b, "]}"...)
}

// memoryInUse is the GPUs' used memory, or this process's resident
// memory when there is no GPU monitor.
func memoryInUse(watch *gpu.Monitor, gpus int) int64 {
	if watch == nil {
		n, _ := engine.ResidentBytes()
		return n
	}
	watch.Sample()
	var used uint64
	for k := range gpus {
		if s, ok := watch.Latest(k); ok {
			used += s.MemoryUsed
		}
	}
	return int64(used)
}

// gpuScrape reads the server's own /metrics while the load runs and keeps
// the highest GPU readings: what a Prometheus server would have seen.
type gpuScrape struct {
	utilization, memory, power, samples atomic.Int64 // percent, bytes, milliwatts, count
	done                                chan struct{}
	wg                                  sync.WaitGroup
}

func startScrape(url string, every time.Duration) *gpuScrape {
	s := &gpuScrape{done: make(chan struct{})}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				return
			case <-t.C:
				s.read(url)
			}
		}
	}()
	return s
}

func (s *gpuScrape) read(url string) {
	status, body, err := fasthttp.GetTimeout(nil, url, 5*time.Second)
	if err != nil || status != fasthttp.StatusOK {
		return
	}
	p := expfmt.NewTextParser(pmodel.UTF8Validation)
	families, err := p.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		return
	}
	s.samples.Add(1)
	keep := func(a *atomic.Int64, v int64) {
		for {
			old := a.Load()
			if v <= old || a.CompareAndSwap(old, v) {
				return
			}
		}
	}
	for name, scale := range map[string]float64{"modelserve_gpu_utilization_ratio": 100, "modelserve_gpu_memory_used_bytes": 1,
		"modelserve_gpu_power_watts": 1000} {
		f, ok := families[name]
		if !ok {
			continue
		}
		for _, m := range f.GetMetric() {
			v := int64(m.GetGauge().GetValue() * scale)
			switch name {
			case "modelserve_gpu_utilization_ratio":
				keep(&s.utilization, v)
			case "modelserve_gpu_memory_used_bytes":
				keep(&s.memory, v)
			default:
				keep(&s.power, v)
			}
		}
	}
}

func (s *gpuScrape) stop() {
	close(s.done)
	s.wg.Wait()
}

// labelsOf lists, for each series of a gauge, the values of the named
// labels.
func labelsOf(g prometheus.Gatherer, name string, labels ...string) [][]string {
	var out [][]string
	for _, m := range family(g, name) {
		vals := make([]string, len(labels))
		for _, lp := range m.GetLabel() {
			if i := slices.Index(labels, lp.GetName()); i >= 0 {
				vals[i] = lp.GetValue()
			}
		}
		out = append(out, vals)
	}
	slices.SortFunc(out, func(a, b []string) int { return strings.Compare(strings.Join(a, " "), strings.Join(b, " ")) })
	return out
}

func histogram(g prometheus.Gatherer, name string) (sum, count float64) {
	for _, m := range family(g, name) {
		sum += m.GetHistogram().GetSampleSum()
		count += float64(m.GetHistogram().GetSampleCount())
	}
	return sum, count
}

func counterSum(g prometheus.Gatherer, name string) float64 {
	var n float64
	for _, m := range family(g, name) {
		n += m.GetCounter().GetValue()
	}
	return n
}

func family(g prometheus.Gatherer, name string) []*dto.Metric {
	families, err := g.Gather()
	if err != nil {
		return nil
	}
	for _, f := range families {
		if f.GetName() == name {
			return f.GetMetric()
		}
	}
	return nil
}
