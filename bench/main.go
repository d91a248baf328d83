// Command bench measures what /predict costs on top of ONNX Runtime: for a
// small MLP and a transformer encoder, at batch 1 and 64, raw in-process
// rows/s against rows/s through a real modelserve process under concurrent
// load, all in one run, and writes the table as Markdown.
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelserve/modelserve/onnxrt"
	"github.com/modelserve/modelserve/workers"
)

type options struct {
	binary   string
	out      string
	duration time.Duration
	python   string
}

// benchModel is one model the table covers.
type benchModel struct {
	name    string
	input   string
	output  string
	width   int // values per row
	isInt   bool
	vocab   int
	outSize int
}

var (
	mlp     = benchModel{name: "mlp", input: "x", output: "y", width: 64, outSize: 8}
	encoder = benchModel{name: "encoder", input: "input_ids", output: "embedding", width: 32, isInt: true, vocab: 8000, outSize: 256}
)

// benchCase is one row of the table.
type benchCase struct {
	model       benchModel
	batch       int
	connections int
	workers     int // 0: the server's default plan
	note        string
}

type result struct {
	c        benchCase
	raw      float64 // rows/s in process
	served   float64 // rows/s through /predict
	p50, p99 time.Duration
	plan     string // workers×intra-op threads, the same for both sides
}

func main() {
	var o options
	flag.StringVar(&o.binary, "binary", "bin/modelserve", "modelserve binary to benchmark")
	flag.StringVar(&o.out, "out", "out/bench.md", "where to write the table")
	flag.DurationVar(&o.duration, "duration", 8*time.Second, "measuring time per cell")
	flag.StringVar(&o.python, "python", "/usr/bin/python3", "python with python3-onnx")
	flag.Parse()
	if err := run(o); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

func run(o options) error {
	rt, err := onnxrt.Load("")
	if err != nil {
		return err
	}
	work, err := os.MkdirTemp("", "modelserve-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(work)
	registry := filepath.Join(work, "registry")
	gen := exec.Command(o.python, "scripts/models.py", filepath.Join(work, "models"), "mlp", "encoder")
	if out, err := gen.CombinedOutput(); err != nil {
		return fmt.Errorf("generating models: %v\n%s", err, out)
	}
	for _, m := range []benchModel{mlp, encoder} {
		cmd := exec.Command(o.binary, "--registry", registry, "registry", "log", "--name", m.name, "--version", "1",
			"--file", filepath.Join(work, "models", m.name+".onnx"))
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("registering %s: %v\n%s", m.name, err, out)
		}
	}

	cpus := runtime.GOMAXPROCS(0)
	plan := workers.PlanCPU(workers.Config{}, cpus)
	cases := []benchCase{
		{model: mlp, batch: 1, connections: 16},
		{model: mlp, batch: 64, connections: 8},
		{model: encoder, batch: 1, connections: 8},
		{model: encoder, batch: 64, connections: 8},
		{model: encoder, batch: 64, connections: 8, workers: workers.ReferenceWorkers(cpus), note: "2×vCPU+1 workers"},
	}
	var results []result
	for _, c := range cases {
		fmt.Fprintf(os.Stderr, "bench: %s batch %d %s\n", c.model.name, c.batch, c.note)
		p := plan
		if c.workers > 0 {
			p = workers.PlanCPU(workers.Config{Workers: c.workers}, cpus)
		}
		r := result{c: c, plan: fmt.Sprintf("%d×%d", p.Workers, p.IntraOpThreads)}
		path := filepath.Join(work, "models", c.model.name+".onnx")
		if r.raw, err = measureRaw(path, c, p, o.duration); err != nil {
			return fmt.Errorf("raw %s: %w", c.model.name, err)
		}
		if err := measureServed(o, registry, c, &r); err != nil {
			return fmt.Errorf("served %s: %w", c.model.name, err)
		}
		results = append(results, r)
	}
	table := render(results, rt.Version, cpus, o.duration)
	fmt.Print(table)
	if err := os.MkdirAll(filepath.Dir(o.out), 0o755); err != nil {
		return err
	}
	return os.WriteFile(o.out, []byte(table), 0o644)
}

// measureRaw runs the plan's sessions in this process, each on its own
// goroutine with tensors bound once: the ceiling /predict is held against.
func measureRaw(path string, c benchCase, p workers.Plan, d time.Duration) (float64, error) {
	var rows atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, p.Workers)
	start := make(chan struct{})
	stop := make(chan struct{})
	for range p.Workers {
		opts, err := ort.NewSessionOptions()
		if err != nil {
			return 0, err
		}
		opts.SetIntraOpNumThreads(p.IntraOpThreads)
		opts.SetInterOpNumThreads(1)
		if p.Workers > 1 {
			opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")
		}
		in, err := inputTensor(c)
		if err != nil {
			return 0, err
		}
		out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(c.batch), int64(c.model.outSize)))
		if err != nil {
			return 0, err
		}
		sess, err := ort.NewAdvancedSession(path, []string{c.model.input}, []string{c.model.output}, []ort.Value{in}, []ort.Value{out}, opts)
		opts.Destroy()
		if err != nil {
			return 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer sess.Destroy()
			defer in.Destroy()
			defer out.Destroy()
			<-start
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := sess.Run(); err != nil {
					errs <- err
					return
				}
				rows.Add(int64(c.batch))
			}
		}()
	}
	close(start)
	time.Sleep(time.Second) // warm-up
	before, t0 := rows.Load(), time.Now()
	time.Sleep(d)
	after, elapsed := rows.Load(), time.Since(t0)
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(after-before) / elapsed.Seconds(), nil
}

func inputTensor(c benchCase) (ort.Value, error) {
	shape := ort.NewShape(int64(c.batch), int64(c.model.width))
	rng := rand.New(rand.NewPCG(1, 2))
	if c.model.isInt {
		data := make([]int64, c.batch*c.model.width)
		for i := range data {
			data[i] = rng.Int64N(int64(c.model.vocab))
		}
		return ort.NewTensor(shape, data)
	}
	data := make([]float32, c.batch*c.model.width)
	for i := range data {
		data[i] = rng.Float32()*2 - 1
	}
	return ort.NewTensor(shape, data)
}

// body is a request of c.batch rows, each row the whole input as one array.
func body(c benchCase) string {
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	b.WriteString(`{"data":[`)
	for r := range c.batch {
		if r > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, "[%d,[", r)
		for i := range c.model.width {
			if i > 0 {
				b.WriteByte(',')
			}
			if c.model.isInt {
				b.WriteString(strconv.FormatInt(rng.Int64N(int64(c.model.vocab)), 10))
			} else {
				b.WriteString(strconv.FormatFloat(float64(rng.Float32()*2-1), 'g', -1, 32))
			}
		}
		b.WriteString("]]")
	}
	b.WriteString("]}")
	return b.String()
}

var listeningRE = regexp.MustCompile(`msg=listening .*addr=(\S+)`)

// measureServed starts modelserve serve and loads it over HTTP.
func measureServed(o options, registry string, c benchCase, r *result) error {
	args := []string{"--registry", registry, "serve", "--model", c.model.name, "--host", "127.0.0.1", "--port", "0", "--device", "cpu"}
	if c.workers > 0 {
		args = append(args, "--workers", strconv.Itoa(c.workers))
	}
	cmd := exec.Command(o.binary, args...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return err
	}
	if err := cmd.Start(); err != nil {
		return err
	}
	defer func() {
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	}()
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := listeningRE.FindStringSubmatch(sc.Text()); m != nil {
				addr <- m[1]
			}
		}
	}()
	var host string
	select {
	case host = <-addr:
	case <-time.After(30 * time.Second):
		return errors.New("the server did not start")
	}
	if err := waitReady("http://" + host); err != nil {
		return err
	}
	return load(host, []byte(body(c)), c, o.duration, r)
}

// load keeps c.connections requests in flight and, after a warm-up in the
// same run (so the pipeline is full), counts the rows answered in a window
// of d, as measureRaw does.
func load(host string, body []byte, c benchCase, d time.Duration, r *result) error {
	client := &fasthttp.HostClient{Addr: host, MaxConns: c.connections, ReadTimeout: time.Minute, WriteTimeout: time.Minute}
	var (
		measuring atomic.Bool
		done      atomic.Bool
		rows      atomic.Int64
		failures  atomic.Int64
		mu        sync.Mutex
		latencies []time.Duration
		firstErr  atomic.Value
		wg        sync.WaitGroup
	)
	for range c.connections {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := fasthttp.AcquireRequest(), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			req.SetRequestURI("http://" + host + "/predict")
			req.Header.SetMethod(fasthttp.MethodPost)
			req.Header.SetContentType("application/json")
			req.SetBodyRaw(body)
			var mine []time.Duration
			for !done.Load() {
				start := time.Now()
				err := client.Do(req, resp)
				if err == nil && resp.StatusCode() != fasthttp.StatusOK {
					err = fmt.Errorf("status %d: %s", resp.StatusCode(), resp.Body())
				}
				if !measuring.Load() || done.Load() {
					continue
				}
				if err != nil {
					failures.Add(1)
					firstErr.CompareAndSwap(nil, err.Error())
					continue
				}
				rows.Add(int64(c.batch))
				mine = append(mine, time.Since(start))
			}
			mu.Lock()
			latencies = append(latencies, mine...)
			mu.Unlock()
		}()
	}
	time.Sleep(time.Second) // warm-up
	measuring.Store(true)
	t0 := time.Now()
	time.Sleep(d)
	done.Store(true)
	elapsed := time.Since(t0)
	counted := rows.Load()
	wg.Wait()
	if n := failures.Load(); n > 0 {
		return fmt.Errorf("%d requests failed under load, the first: %v", n, firstErr.Load())
	}
	r.served = float64(counted) / elapsed.Seconds()
	slices.Sort(latencies)
	if len(latencies) > 0 {
		r.p50 = latencies[len(latencies)/2]
		r.p99 = latencies[len(latencies)*99/100]
	}
	return nil
}

func waitReady(base string) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		resp, err := http.Get(base + "/healthcheck")
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return errors.New("the server did not become ready")
}

// short keeps three significant digits or so: 470µs, 2.35ms, 1.01s.
func short(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

func render(results []result, ortVersion string, cpus int, d time.Duration) string {
	var b strings.Builder
	host, _ := os.Hostname()
	fmt.Fprintf(&b, "# modelserve bench\n\n%s, %d cores (GOMAXPROCS), ONNX Runtime %s, CPU; %s per cell, measured in one run.\n",
		host, cpus, ortVersion, d)
	fmt.Fprintf(&b, "Raw: in-process sessions with tensors bound once, one goroutine each. /predict: a modelserve process loaded over HTTP by this program (keep-alive connections, JSON rows in the external-function format).\n")
	fmt.Fprintf(&b, "Both sides warm up for 1s and count rows in the same-length window. Workers are workers×intra-op threads; the load generator shares the same cores.\n\n")
	fmt.Fprintln(&b, "| model | batch | workers | connections | raw ORT rows/s | /predict rows/s | /predict ÷ raw | p50 | p99 |")
	fmt.Fprintln(&b, "|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, r := range results {
		name := r.c.model.name
		if r.c.note != "" {
			name += " (" + r.c.note + ")"
		}
		fmt.Fprintf(&b, "| %s | %d | %s | %d | %.0f | %.0f | %.1f%% | %s | %s |\n", name, r.c.batch, r.plan, r.c.connections,
			r.raw, r.served, 100*r.served/r.raw, short(r.p50), short(r.p99))
	}
	return b.String()
}
