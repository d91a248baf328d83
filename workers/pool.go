package workers

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/internal/faults"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/onnxrt"
)

// Model is what a pool loads: the file, the inputs it is fed, and the
// outputs fetched from it, in the order Run takes and returns them.
type Model struct {
	Path    string
	Inputs  []model.Spec
	Outputs []string
}

// Pool is a set of workers, each owning one session on its own OS thread.
// Run borrows an idle worker, so at most Size runs are in flight.
type Pool struct {
	plan  Plan
	model Model
	// batch is the model's fixed batch size, 0 when the batch is open.
	batch   int
	idle    chan *worker
	workers []*worker
	cost    Cost
	// deviceBytesPerRow is the GPU memory a row took at warm-up, 0 when
	// not measured.
	deviceBytesPerRow int64

	busy    prometheus.Gauge
	runTime prometheus.Histogram
}

// worker is a goroutine locked to its own OS thread, at lower priority
// than the server's (computeNice), that opens its session on that thread,
// so ONNX Runtime's threads inherit the priority (and, on a GPU, the
// device context stays with one thread), then runs the jobs it is sent.
type worker struct {
	id int
	// gpu is the CUDA number of the worker's GPU, -1 on the CPU.
	gpu      int
	provider string
	jobs     chan job
	done     chan struct{}
}

// device names the worker's device: cpu, or cuda:N.
func (w *worker) device() string {
	if w.gpu < 0 {
		return "cpu"
	}
	return "cuda:" + strconv.Itoa(w.gpu)
}

// Execution providers, as ONNX Runtime names them.
const (
	ProviderCPU      = "CPUExecutionProvider"
	ProviderCUDA     = "CUDAExecutionProvider"
	ProviderTensorRT = "TensorrtExecutionProvider"
)

type job struct {
	ctx    context.Context
	inputs []model.Tensor
	reply  chan jobResult
}

type jobResult struct {
	outputs []model.Tensor
	err     error
}

// startWorker starts a worker whose session open creates; it returns once
// the session is open, or with the reason it is not.
func startWorker(id, gpu int, provider string, open func() (*onnxrt.Session, error), rec *panics.Recorder, log *slog.Logger) (*worker, error) {
	w := &worker{id: id, gpu: gpu, provider: provider, jobs: make(chan job), done: make(chan struct{})}
	opened := make(chan error, 1)
	go func() {
		// Never unlocked: the thread ends with the worker, and its
		// lowered priority with it.
		runtime.LockOSThread()
		defer close(w.done)
		if err := lowerPriority(); err != nil {
			log.Debug("cannot lower the worker thread's priority", "error", err.Error())
		}
		sess, err := open()
		opened <- err
		if err != nil {
			return
		}
		defer sess.Close()
		for j := range w.jobs {
			outs, err := runJob(sess, j, rec)
			j.reply <- jobResult{outs, err}
		}
	}()
	if err := <-opened; err != nil {
		<-w.done
		return nil, err
	}
	return w, nil
}

// runJob runs one job on the worker's session; a panic fails the job,
// and the worker goes on with the next.
func runJob(sess *onnxrt.Session, j job, rec *panics.Recorder) (outs []model.Tensor, err error) {
	defer rec.Catch(panics.Worker, &err)
	faults.Inject(j.ctx, panics.Worker)
	return sess.Run(j.ctx, j.inputs)
}

// run hands a job to the worker's thread and waits for it: ctx ends a run
// in progress through ONNX Runtime, so the wait stays short.
func (w *worker) run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	reply := make(chan jobResult, 1)
	w.jobs <- job{ctx: ctx, inputs: inputs, reply: reply}
	r := <-reply
	return r.outputs, r.err
}

func (w *worker) stop() {
	close(w.jobs)
	<-w.done
}

// Start plans the pool, opens every worker's session and returns once all
// are loaded and warmed up. With Device auto it uses CUDA when NVML sees a
// GPU and a session opens on it, and otherwise falls back to the CPU,
// saying why (in the log and in /metrics); with Device cuda that reason is
// the error.
func Start(ctx context.Context, rt *onnxrt.Runtime, m Model, cfg Config, log *slog.Logger, reg prometheus.Registerer) (*Pool, error) {
	if len(m.Inputs) == 0 || len(m.Outputs) == 0 {
		return nil, fmt.Errorf("a pool needs a model with inputs and outputs")
	}
	if err := cfg.CUDA.Validate(); err != nil {
		return nil, err
	}
	p := &Pool{model: m, batch: fixedBatch(m.Inputs)}
	inputs := make([]string, len(m.Inputs))
	for i, in := range m.Inputs {
		inputs[i] = in.Name
	}
	tensorRT := false
	if cfg.CUDA.TensorRT && cfg.Device != CPU {
		if lib, ok := rt.ProviderLibrary("tensorrt"); ok {
			tensorRT = true
		} else {
			log.Warn("TensorRT asked for, but its provider library is missing; using CUDA alone", "library", lib)
		}
	}
	start := func(plan Plan, i int) (*worker, error) {
		opts := onnxrt.SessionOptions{IntraOpThreads: plan.IntraOpThreads, NoSpinning: plan.Workers > 1}
		gpu, provider := -1, ProviderCPU
		if plan.Device == CUDA {
			gpu, provider = plan.GPUs[i], ProviderCUDA
			opts.CUDA = &onnxrt.CUDAOptions{DeviceID: gpu, Settings: cfg.CUDA.Settings()}
			if tensorRT {
				opts.TensorRT, provider = true, ProviderTensorRT
			}
		}
		return startWorker(i, gpu, provider, func() (*onnxrt.Session, error) {
			return rt.NewSession(m.Path, inputs, m.Outputs, opts)
		}, cfg.Panics, log)
	}

	var first *worker
	cores := runtime.GOMAXPROCS(0)
	plan, err := Choose(cfg, cores, rt, func(plan Plan) (err error) {
		// The real test of a GPU: worker 0's session opens on it.
		first, err = start(plan, 0)
		return err
	})
	if err != nil {
		return nil, err
	}
	switch {
	case plan.Fallback != "" && plan.GPUSeen:
		// A GPU is there and cannot be used: that is news.
		log.Warn("no usable GPU, running on the CPU", "reason", plan.Fallback)
	case plan.Fallback != "":
		log.Info("no GPU, running on the CPU", "reason", plan.Fallback)
	}
	p.plan = plan
	if p.plan.Oversubscribed {
		log.Warn("workers × intra-op threads exceed the cores; expect contention",
			"workers", p.plan.Workers, "intra_op_threads", p.plan.IntraOpThreads, "cores", cores)
	}

	p.idle = make(chan *worker, p.plan.Workers)
	for i := 0; i < p.plan.Workers; i++ {
		w := first
		if i > 0 || w == nil {
			if err := ctx.Err(); err != nil {
				p.closeAll()
				return nil, err
			}
			var err error
			if w, err = start(p.plan, i); err != nil {
				p.closeAll()
				return nil, fmt.Errorf("loading worker %d of %d: %w", i+1, p.plan.Workers, err)
			}
		}
		p.workers = append(p.workers, w)
		p.idle <- w
	}

	if err := p.registerMetrics(reg, cfg.Device); err != nil {
		p.closeAll()
		return nil, err
	}
	// Warm-up failing (a model that refuses zeros) costs only the first
	// request's speed, so it is reported, not fatal.
	cost, err := p.warmUp(ctx)
	if err != nil {
		log.Warn("warm-up failed: the first requests pay ONNX Runtime's initialization", "error", err.Error())
	}
	p.cost = cost
	if p.plan.Device == CUDA && cfg.Memory != nil {
		if p.deviceBytesPerRow, err = p.measureDeviceMemory(ctx, cfg.Memory); err != nil {
			log.Warn("could not measure the GPU memory a row takes", "error", err.Error())
		}
	}
	log.Info("workers loaded", "device", string(p.plan.Device), "workers", p.plan.Workers,
		"intra_op_threads", p.plan.IntraOpThreads, "why", p.plan.Reason, "provider", p.workers[0].provider,
		"call_fixed_cost", cost.Fixed.String(), "call_cost_per_row", cost.PerRow.String(), "large_calls_scale", cost.Scales)
	return p, nil
}

func (p *Pool) registerMetrics(reg prometheus.Registerer, requested Device) error {
	workers := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "modelserve_workers",
		Help:        "Workers loaded, each with its own ONNX Runtime session.",
		ConstLabels: prometheus.Labels{"device": string(p.plan.Device)},
	})
	workers.Set(float64(len(p.workers)))
	info := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "modelserve_worker_info",
		Help: "The device and execution provider each worker runs on (always 1).",
	}, []string{"worker", "device", "provider"})
	for _, w := range p.workers {
		device := w.device()
		info.WithLabelValues(strconv.Itoa(w.id), device, w.provider).Set(1)
	}
	placement := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modelserve_device_info",
		Help: "The device asked for, the one used, and why they differ (always 1).",
		ConstLabels: prometheus.Labels{"requested": string(requested), "device": string(p.plan.Device),
			"fallback_reason": p.plan.Fallback},
	})
	placement.Set(1)
	p.busy = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modelserve_workers_busy",
		Help: "Workers running a batch right now.",
	})
	p.runTime = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "modelserve_inference_duration_seconds",
		Help:    "Time ONNX Runtime takes to run one batch.",
		Buckets: prometheus.ExponentialBuckets(50e-6, 2.5, 14),
	})
	for _, c := range []prometheus.Collector{workers, info, placement, p.busy, p.runTime} {
		if err := reg.Register(c); err != nil {
			return fmt.Errorf("registering worker metrics: %w", err)
		}
	}
	return nil
}

// fixedBatch returns the batch size every input fixes, or 0 when the
// batch dimension is open.
func fixedBatch(inputs []model.Spec) int {
	for _, in := range inputs {
		if len(in.Shape) > 0 && in.Shape[0] > 0 {
			return int(in.Shape[0])
		}
	}
	return 0
}

// Plan is the layout the pool runs with.
func (p *Pool) Plan() Plan { return p.plan }

// Cost is the measured cost of one call (zero if warm-up failed).
func (p *Pool) Cost() Cost { return p.cost }

// DeviceBytesPerRow is the GPU memory one row took at warm-up, 0 when it
// was not measured (on the CPU, or without NVML).
func (p *Pool) DeviceBytesPerRow() int64 { return p.deviceBytesPerRow }

// Size is the number of workers.
func (p *Pool) Size() int { return len(p.workers) }

// FixedBatch is the model's fixed batch size, 0 when it takes any batch.
func (p *Pool) FixedBatch() int { return p.batch }

// Run runs one batch on the next idle worker. Inputs follow Model.Inputs,
// outputs Model.Outputs; every output has one row per input row. A model
// with a fixed batch size runs in chunks of that size.
func (p *Pool) Run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	if len(inputs) != len(p.model.Inputs) {
		return nil, fmt.Errorf("the model takes %d inputs, got %d", len(p.model.Inputs), len(inputs))
	}
	var w *worker
	select {
	case w = <-p.idle:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	defer func() { p.idle <- w }()
	p.busy.Inc()
	defer p.busy.Dec()
	if span := trace.SpanFromContext(ctx); span.IsRecording() {
		span.SetAttributes(attribute.Int("modelserve.worker", w.id), attribute.String("modelserve.device", w.device()),
			attribute.String("modelserve.provider", w.provider))
	}

	rows := inputs[0].Rows()
	if p.batch == 0 || rows == p.batch {
		return p.runOnce(ctx, w, inputs, rows)
	}
	return p.runChunks(ctx, w, inputs, rows)
}

// runChunks feeds a fixed-batch model chunk by chunk, padding the last
// chunk by repeating its last row and dropping the padded outputs.
func (p *Pool) runChunks(ctx context.Context, w *worker, inputs []model.Tensor, rows int) ([]model.Tensor, error) {
	parts := make([][]model.Tensor, len(p.model.Outputs))
	for lo := 0; lo < rows; lo += p.batch {
		hi := min(lo+p.batch, rows)
		chunk := make([]model.Tensor, len(inputs))
		for i, in := range inputs {
			chunk[i] = in.SliceRows(lo, hi)
			if pad := p.batch - (hi - lo); pad > 0 {
				padded, err := padRows(chunk[i], pad)
				if err != nil {
					return nil, err
				}
				chunk[i] = padded
			}
		}
		outs, err := p.runOnce(ctx, w, chunk, p.batch)
		if err != nil {
			return nil, err
		}
		for i, o := range outs {
			parts[i] = append(parts[i], o.SliceRows(0, hi-lo))
		}
	}
	result := make([]model.Tensor, len(parts))
	for i, ps := range parts {
		t, err := model.ConcatRows(ps)
		if err != nil {
			return nil, fmt.Errorf("joining output %q: %w", p.model.Outputs[i], err)
		}
		result[i] = t
	}
	return result, nil
}

func padRows(t model.Tensor, n int) (model.Tensor, error) {
	last := t.SliceRows(t.Rows()-1, t.Rows())
	parts := []model.Tensor{t}
	for range n {
		parts = append(parts, last)
	}
	return model.ConcatRows(parts)
}

// runOnce runs one call for a caller, timed in the inference histogram.
func (p *Pool) runOnce(ctx context.Context, w *worker, inputs []model.Tensor, rows int) ([]model.Tensor, error) {
	start := time.Now()
	outs, err := p.call(ctx, w, inputs, rows)
	p.runTime.Observe(time.Since(start).Seconds())
	return outs, err
}

// call runs one call and checks that every output has a row per input
// row. Warm-up's calls come straight here: they are nobody's requests,
// and the inference histogram counts only those.
func (p *Pool) call(ctx context.Context, w *worker, inputs []model.Tensor, rows int) ([]model.Tensor, error) {
	outs, err := w.run(ctx, inputs)
	if err != nil {
		return nil, err
	}
	for i, o := range outs {
		if o.Rows() != rows || len(o.Shape) == 0 {
			return nil, fmt.Errorf("output %q has shape %s for a batch of %d rows; modelserve needs one output row per input row",
				p.model.Outputs[i], o.Shape, rows)
		}
	}
	return outs, nil
}

// Close waits for running batches (or ctx) and releases every session.
func (p *Pool) Close(ctx context.Context) error {
	for range p.workers {
		select {
		case <-p.idle:
		case <-ctx.Done():
			return fmt.Errorf("closing workers: %w", ctx.Err())
		}
	}
	p.closeAll()
	return nil
}

func (p *Pool) closeAll() {
	for _, w := range p.workers {
		w.stop()
	}
	p.workers = nil
}
