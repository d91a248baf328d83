package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"slices"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/auth"
	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/onnxrt"
	"github.com/modelserve/modelserve/registry"
	"github.com/modelserve/modelserve/server"
	"github.com/modelserve/modelserve/workers"
)

type serveOptions struct {
	model        string
	host         string
	port         int
	workers      int
	intraOp      int
	device       string
	maxBodyBytes byteSize
	inflateRatio int
	drain        time.Duration

	// connections
	headerTimeout  time.Duration
	minBodyRate    byteSize
	idleTimeout    time.Duration
	writeTimeout   time.Duration
	maxHeaderBytes byteSize
	maxConnections int

	// admission
	maxQueueWait      time.Duration
	defaultPriority   string
	maxQueue          int
	maxQueueRows      int
	maxQueueBytes     byteSize
	memoryBudget      byteSize
	memoryFraction    float64
	maxBatchRows      int
	maxBatchDelay     admission.BatchDelay
	requestTimeout    time.Duration
	maxRequestTimeout time.Duration
	unbounded         bool

	// gateway protocol
	async        string
	resultTTL    time.Duration
	resultMemory byteSize
	contentMD5   bool

	debugAddr string

	sec securityOptions

	// GPU
	workersPerGPU       int
	gpuMemLimit         byteSize
	arenaStrategy       string
	convAlgoSearch      string
	copyInDefaultStream bool
	tensorRT            bool
	deviceBytesPerRow   byteSize
	gpuMemoryMargin     float64
	gpuSampleInterval   time.Duration
}

// gpuFlags adds the GPU flags serve and predict-batch share.
func (o *serveOptions) gpuFlags(f *pflag.FlagSet) {
	f.IntVar(&o.workersPerGPU, "workers-per-gpu", 1, "workers on each GPU, each with its own session (--workers sets the total instead)")
	f.Var(&o.gpuMemLimit, "gpu-mem-limit", "cap each GPU session's memory arena, e.g. 8Gi (default: registry setting, else none)")
	f.StringVar(&o.arenaStrategy, "arena-extend-strategy", "", "how a GPU session's arena grows: kSameAsRequested or kNextPowerOfTwo (default: registry setting, else kSameAsRequested)")
	f.StringVar(&o.convAlgoSearch, "cudnn-conv-algo-search", "", "how cuDNN picks convolution algorithms: EXHAUSTIVE, HEURISTIC or DEFAULT (default: registry setting, else ONNX Runtime's)")
	f.BoolVar(&o.copyInDefaultStream, "copy-in-default-stream", true, "copy inputs and outputs on the GPU's default stream (do_copy_in_default_stream)")
	f.BoolVar(&o.tensorRT, "tensorrt", false, "put the TensorRT provider before CUDA when its library is there")
	f.Var(&o.deviceBytesPerRow, "device-bytes-per-row", "the GPU memory one row takes, for admission (default: registry setting, else measured at load)")
	f.Float64Var(&o.gpuMemoryMargin, "gpu-memory-margin", 0.1, "share of each GPU's memory admission leaves free")
	f.DurationVar(&o.gpuSampleInterval, "gpu-sample-interval", gpu.DefaultSampleInterval, "how often GPUs are sampled for metrics and admission")
}

// newServeOptions returns serve's options at their defaults, the flags
// registered on f (a throwaway set gives the defaults alone).
func newServeOptions(f *pflag.FlagSet) *serveOptions {
	o := &serveOptions{maxBodyBytes: server.DefaultMaxBodyBytes, maxBatchDelay: admission.AutoDelay,
		minBodyRate: server.DefaultMinBodyRate, maxHeaderBytes: server.DefaultMaxHeaderBytes}
	o.flags(f)
	return o
}

func newServeCmd(g *globals) *cobra.Command {
	var o *serveOptions
	cmd := &cobra.Command{
		Use:   "serve --model NAME[:VERSION]",
		Short: "Serve a registered model over HTTP",
		Long: `Serve a registered model over HTTP: POST /predict runs the default
function and POST /<function> each named one (underscores become hyphens),
in the SQL gateway's external-function format. GET /healthcheck (or /health)
answers 200 once every worker has loaded, and GET /metrics is for Prometheus.

Admission keeps the queue short and memory bounded: a request that does not
fit is answered 429 at once. Concurrent requests share ONNX Runtime calls of
up to --max-batch-rows rows; larger ones are split across workers.
--max-batch-rows and --max-batch-delay default to the version's registry
settings (registry set), then to 64 rows and auto.

Every flag can also be set as MODELSERVE_<FLAG>, e.g. MODELSERVE_WORKERS=4.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			return serve(cmd, g, o, log)
		},
	}
	o = newServeOptions(cmd.Flags())
	cmd.MarkFlagRequired("model")
	return cmd
}

// flags registers serve's flags on f, each at its default.
func (o *serveOptions) flags(f *pflag.FlagSet) {
	f.StringVar(&o.model, "model", "", "model to serve, NAME[:VERSION] (default version: the latest)")
	f.StringVar(&o.host, "host", "0.0.0.0", "address to listen on")
	f.IntVar(&o.port, "port", 8080, "port to listen on")
	f.IntVar(&o.workers, "workers", 0, "workers, each with its own session (default: one per core on CPU, one per GPU)")
	f.IntVar(&o.intraOp, "intra-op-threads", 0, "threads per session (default: cores divided among the workers)")
	f.StringVar(&o.device, "device", "auto", "auto, cpu or cuda")
	f.Var(&o.maxBodyBytes, "max-body-bytes", "largest request body accepted, also once decompressed (413 above)")
	f.IntVar(&o.inflateRatio, "max-inflate-ratio", server.DefaultMaxInflateRatio, "refuse (413) a compressed body that inflates past 1MiB and more than this many times its size")
	f.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "how long a shutdown waits for requests in progress")
	f.DurationVar(&o.headerTimeout, "header-timeout", server.DefaultHeaderTimeout, "time a client has to send a request's headers (408 after)")
	f.Var(&o.minBodyRate, "min-body-rate", "slowest a request may arrive, in bytes a second, once --header-timeout has passed (408 below)")
	f.DurationVar(&o.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "how long a kept-alive connection may wait for its next request")
	f.DurationVar(&o.writeTimeout, "write-timeout", server.DefaultWriteTimeout, "time to write one answer to a client")
	f.Var(&o.maxHeaderBytes, "max-header-bytes", "largest request headers accepted (431 above)")
	f.IntVar(&o.maxConnections, "max-connections", server.DefaultMaxConnections, "most open connections (503 and closed above)")

	f.DurationVar(&o.maxQueueWait, "max-queue-wait", 0, "longest a request may be predicted to wait for a worker, from the cost of the work ahead of it (default: 50ms or one full batch at the measured cost, whichever is longer); low priority is shed at half, high at twice")
	f.StringVar(&o.defaultPriority, "default-priority", "normal", "priority of a request without "+server.PriorityHeader+": high, normal or low")
	f.IntVar(&o.maxQueue, "max-queue", admission.DefaultMaxQueued, "requests that may wait for a worker (a backstop: the wait bounds the queue first)")
	f.IntVar(&o.maxQueueRows, "max-queue-rows", 0, "rows that may wait for a worker (default: no bound of its own; the wait bounds them)")
	f.Var(&o.maxQueueBytes, "max-queue-bytes", "input bytes that may wait for a worker (default: half the memory budget)")
	f.Var(&o.memoryBudget, "memory-budget", "bytes admitted requests may hold, e.g. 2Gi (default: --memory-fraction of the memory left once the model is loaded)")
	f.Float64Var(&o.memoryFraction, "memory-fraction", 0.5, "share of the memory left after loading that becomes the budget (cgroup limit, else physical memory)")
	f.IntVar(&o.maxBatchRows, "max-batch-rows", 0, "most rows in one ONNX Runtime call (default: registry setting, else 64); 1 turns batching off")
	f.Var((*batchDelayFlag)(&o.maxBatchDelay), "max-batch-delay", "how long a free worker may wait to fill a batch: auto (wait a few times the model's fixed cost per call, only while rows keep coming), a duration, or 0 (default: registry setting, else auto)")
	f.DurationVar(&o.requestTimeout, "request-timeout", server.DefaultRequestTimeout, "a request's deadline unless its "+server.TimeoutHeader+" header says otherwise")
	f.DurationVar(&o.maxRequestTimeout, "max-request-timeout", server.DefaultMaxRequestTimeout, "the longest deadline a header may ask for")
	f.BoolVar(&o.unbounded, "unbounded-queue", false, "turn admission limits off (for comparisons: the queue and memory then grow without bound)")
	f.StringVar(&o.async, "async", "30s", "gateway batches answered 202 and polled: never, always, or those expected to take longer than this duration")
	f.DurationVar(&o.resultTTL, "result-ttl", server.DefaultResultTTL, "how long a gateway batch's answer is kept for retries and polls (at least, memory permitting)")
	f.Var(&o.resultMemory, "result-memory", "memory for kept answers, oldest evicted first (default: a quarter of the memory budget)")
	f.BoolVar(&o.contentMD5, "content-md5", false, "add a Content-MD5 header to answers")
	f.StringVar(&o.debugAddr, "debug-addr", "", "serve Go's profiler (/debug/pprof) on this address, e.g. 127.0.0.1:6060 (off by default)")
	o.gpuFlags(f)
	o.sec.flags(f)
}

func serve(cmd *cobra.Command, g *globals, o *serveOptions, log *slog.Logger) error {
	ctx := cmd.Context()
	device, err := workers.ParseDevice(o.device)
	if err != nil {
		return err
	}
	async, err := server.ParseAsync(o.async)
	if err != nil {
		return err
	}
	reg, v, release, err := g.use(o.model)
	if err != nil {
		return err
	}
	defer release()
	log = log.With("model", v.Name, "version", v.Version)
	// Flags win over the version's own settings, which win over defaults.
	if !cmd.Flags().Changed("max-batch-rows") {
		o.maxBatchRows = v.Settings.MaxBatchRows
	}
	if !cmd.Flags().Changed("max-batch-delay") && v.Settings.MaxBatchDelay != "" {
		if o.maxBatchDelay, err = admission.ParseBatchDelay(v.Settings.MaxBatchDelay); err != nil {
			return fmt.Errorf("%s's settings: %w", v.Ref(), err)
		}
	}

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labelled := prometheus.WrapRegistererWith(prometheus.Labels{"model": v.Name, "version": v.Version}, metrics)
	recorder, err := panics.New(labelled)
	if err != nil {
		return err
	}

	// Listen before loading, so probes get an honest 503 meanwhile.
	addr := net.JoinHostPort(o.host, strconv.Itoa(o.port))
	sec, err := o.sec.setup(labelled, log, addr)
	if err != nil {
		return err
	}
	sec.keepFresh(ctx, log)

	prio, err := admission.ParsePriority(o.defaultPriority)
	if err != nil {
		return fmt.Errorf("--default-priority: %w", err)
	}
	audit, closeAudit, err := g.auditLogger()
	if err != nil {
		return err
	}
	defer closeAudit()
	srv, err := server.New(server.Config{
		Audit:             audit.With("model", v.Name, "version", v.Version),
		DefaultPriority:   prio,
		Model:             v.Name,
		Auth:              sec.policy,
		AuthHealth:        o.sec.authHealth,
		TLS:               sec.tlsConfig(),
		Signature:         v.Signature,
		MaxBodyBytes:      int(o.maxBodyBytes),
		MaxInflateRatio:   o.inflateRatio,
		Log:               log,
		Gatherer:          metrics,
		Registerer:        labelled,
		RequestTimeout:    o.requestTimeout,
		MaxRequestTimeout: o.maxRequestTimeout,
		Async:             async,
		ResultTTL:         o.resultTTL,
		ResultBytes:       int64(o.resultMemory),
		ContentMD5:        o.contentMD5,
		Panics:            recorder,
		Conn: server.ConnLimits{HeaderTimeout: o.headerTimeout, MinBodyRate: int64(o.minBodyRate), IdleTimeout: o.idleTimeout,
			WriteTimeout: o.writeTimeout, MaxHeaderBytes: int(o.maxHeaderBytes), MaxConnections: o.maxConnections},
	})
	if err != nil {
		return fmt.Errorf("serving %s: %w", v.Ref(), err)
	}
	// Listen before loading, so probes get an honest 503 meanwhile.
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	if o.debugAddr != "" {
		stopDebug, err := serveDebug(o.debugAddr, log, sec)
		if err != nil {
			srv.Shutdown(context.Background())
			return err
		}
		defer stopDebug()
	}
	log.Info("listening", "addr", ln.Addr().String(), "routes", srv.Routes())

	queue, pool, stopGPU, err := load(ctx, reg, v, o, device, log, labelled, recorder)
	if err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	defer stopGPU()
	srv.SetAdmitter(queue)
	log.Info("ready")

	select {
	case <-ctx.Done():
		log.Info("shutting down", "drain_timeout", o.drain.String())
	case err := <-served:
		queue.Close()
		pool.Close(context.Background())
		return fmt.Errorf("server stopped: %w", err)
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), o.drain)
	defer cancel()
	errs := []error{srv.Shutdown(drainCtx)}
	queue.Close()
	errs = append(errs, pool.Close(drainCtx))
	return errors.Join(errs...)
}

// serveDebug serves the profiler on its own listener, apart from the
// model's routes.
func serveDebug(addr string, log *slog.Logger, sec *security) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr: %w", err)
	}
	if c := sec.tlsConfig(); c != nil {
		ln = tls.NewListener(ln, c)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// Profiles show the server's insides: the admin scope, when callers
	// authenticate.
	hs := &http.Server{Handler: sec.guardHTTP(auth.Need{Scope: auth.ScopeAdmin}, mux), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	log.Info("profiler", "addr", ln.Addr().String())
	return func() { hs.Close() }, nil
}

// load checks the model file against its checksum, starts the workers
// (on the GPUs NVML finds, unless told the CPU) and puts the admission
// queue in front of them. release stops the GPU sampling. A panic in a
// worker or a dispatcher fails its batch and is counted in rec.
func load(ctx context.Context, reg *registry.Registry, v registry.Version, o *serveOptions, device workers.Device,
	log *slog.Logger, metrics prometheus.Registerer, rec *panics.Recorder) (*admission.Queue, *workers.Pool, func(), error) {
	m, err := startModel(ctx, reg, v, o, device, log, metrics, rec)
	if err != nil {
		return nil, nil, nil, err
	}
	queue, err := m.admit(o, metrics, log)
	if err != nil {
		m.close(ctx)
		return nil, nil, nil, err
	}
	return queue, m.pool, m.release, nil
}

// started is a version's workers, and the GPU monitor when they run on GPUs.
type started struct {
	v       registry.Version
	pool    *workers.Pool
	mon     *gpu.Monitor // nil unless the workers are on GPUs
	rec     *panics.Recorder
	release func()
	loaded  time.Time
}

func (m *started) close(ctx context.Context) {
	m.pool.Close(ctx)
	m.release()
}

// startModel checks the model file, loads ONNX Runtime and starts the
// workers; on GPUs it samples them every --gpu-sample-interval and
// exports their metrics.
func startModel(ctx context.Context, reg *registry.Registry, v registry.Version, o *serveOptions, device workers.Device,
	log *slog.Logger, metrics prometheus.Registerer, rec *panics.Recorder) (*started, error) {
	start := time.Now()
	if err := reg.Verify(ctx, v); err != nil {
		return nil, err
	}
	rt, err := onnxrt.Load("")
	if err != nil {
		return nil, err
	}
	log.Info("ONNX Runtime loaded", "ort_version", rt.Version, "library", rt.LibraryPath)
	cfg := workers.Config{Workers: o.workers, IntraOpThreads: o.intraOp, Device: device, WorkersPerGPU: o.workersPerGPU,
		CUDA: cudaConfig(o, v.Settings), Panics: rec}
	var mon *gpu.Monitor
	release := func() {}
	if device != workers.CPU {
		cfg.GPUs = gpu.Discover(gpu.NewNVML(), os.LookupEnv)
		for _, note := range cfg.GPUs.Notes {
			log.Info("GPUs", "note", note)
		}
		if len(cfg.GPUs.Devices) > 0 {
			if mon, err = gpu.NewMonitor(gpu.NewNVML(), cfg.GPUs, log); err != nil {
				log.Warn("cannot sample the GPUs; placement and admission go without their memory", "error", err.Error())
				mon = nil
			} else {
				cfg.Memory = mon
				release = func() { mon.Close() }
				// A GPU without room for the margin gets no worker.
				cfg.CUDA.MinFreeBytes = uint64(o.gpuMemoryMargin * float64(smallestGPU(cfg.GPUs)))
			}
		}
	}
	pool, err := workers.Start(ctx, rt, workers.Model{
		Path:    v.ModelPath(),
		Inputs:  v.Signature.Inputs,
		Outputs: v.Signature.FetchedOutputs(),
	}, cfg, log, metrics)
	if err != nil {
		release()
		return nil, fmt.Errorf("loading %s: %w", v.Ref(), err)
	}
	if mon != nil && pool.Plan().Device != workers.CUDA {
		release()
		release, mon = func() {}, nil
	}
	if mon != nil {
		if err := metrics.Register(mon); err != nil {
			pool.Close(ctx)
			release()
			return nil, fmt.Errorf("registering GPU metrics: %w", err)
		}
		mon.Start(o.gpuSampleInterval)
	}
	log.Info("model loaded", "seconds", time.Since(start).Seconds())
	return &started{v: v, pool: pool, mon: mon, rec: rec, release: release, loaded: time.Now()}, nil
}

// admit puts an admission queue in front of the workers, sized by o, its
// metrics in metrics. On GPUs it also keeps in-flight rows within their
// free memory.
func (m *started) admit(o *serveOptions, metrics prometheus.Registerer, log *slog.Logger) (*admission.Queue, error) {
	acfg, err := admissionConfig(o, m.v, m.pool, log)
	if err != nil {
		return nil, err
	}
	acfg.Panics = m.rec
	if m.mon != nil {
		limit, err := gpuAdmission(o, m.v, m.pool, m.mon, log)
		if err != nil {
			return nil, err
		}
		acfg.Limits = append(acfg.Limits, limit)
	}
	queue, err := admission.New(m.pool, acfg, metrics)
	if err != nil {
		return nil, err
	}
	c := queue.Config()
	log.Info("admission", "max_batch_rows", c.MaxBatchRows, "max_batch_delay", c.MaxBatchDelay.String(),
		"max_queue_wait", c.MaxQueueWait.String(), "max_queue", c.MaxQueuedRequests, "max_queue_rows", c.MaxQueuedRows, "max_queue_bytes", c.MaxQueuedBytes,
		"memory_budget", c.MemoryBudget, "unbounded", c.Unbounded)
	return queue, nil
}

// cudaConfig takes the GPU session settings from the flags, else from the
// version's settings.
func cudaConfig(o *serveOptions, st registry.Settings) workers.CUDAConfig {
	c := workers.CUDAConfig{MemLimit: int64(o.gpuMemLimit), ArenaExtendStrategy: o.arenaStrategy, ConvAlgoSearch: o.convAlgoSearch,
		CopyInDefaultStream: &o.copyInDefaultStream, TensorRT: o.tensorRT}
	if c.MemLimit == 0 {
		c.MemLimit = st.GPUMemLimit
	}
	if c.ArenaExtendStrategy == "" {
		c.ArenaExtendStrategy = st.ArenaExtendStrategy
	}
	if c.ConvAlgoSearch == "" {
		c.ConvAlgoSearch = st.ConvAlgoSearch
	}
	return c
}

func smallestGPU(inv gpu.Inventory) uint64 {
	var least uint64
	for _, d := range inv.Devices {
		if least == 0 || d.MemoryTotal < least {
			least = d.MemoryTotal
		}
	}
	return least
}

// gpuAdmission is the admission limit that keeps in-flight rows within
// the GPUs' free memory, at the device bytes a row takes.
func gpuAdmission(o *serveOptions, v registry.Version, pool *workers.Pool, mon *gpu.Monitor, log *slog.Logger) (*gpu.MemoryLimit, error) {
	hostRow := v.Signature.OutputRowBytes()
	for _, in := range v.Signature.Inputs {
		hostRow += in.RowBytes()
	}
	deviceRow, source := int64(o.deviceBytesPerRow), "--device-bytes-per-row"
	if deviceRow == 0 && v.Settings.DeviceBytesPerRow > 0 {
		deviceRow, source = v.Settings.DeviceBytesPerRow, "the version's settings"
	}
	if deviceRow == 0 {
		deviceRow, source = pool.DeviceBytesPerRow(), "measured at load"
	}
	if deviceRow == 0 {
		// The warm-up batch fit in the arena as it was: no growth to read.
		deviceRow, source = 4*hostRow, "4× the row's input and output bytes (nothing to measure at load)"
	}
	var ordinals []int
	for _, k := range pool.Plan().GPUs {
		if !slices.Contains(ordinals, k) {
			ordinals = append(ordinals, k)
		}
	}
	limit, err := gpu.NewMemoryLimit(mon, ordinals, o.gpuMemoryMargin, deviceRow, hostRow)
	if err != nil {
		return nil, err
	}
	log.Info("GPU memory admission", "device_bytes_per_row", deviceRow, "source", source,
		"rows_in_flight", limit.Rows(), "margin", o.gpuMemoryMargin)
	return limit, nil
}

// admissionConfig sizes the queue and the memory budget. It runs once the
// workers have loaded, so what they hold is no longer counted as free.
func admissionConfig(o *serveOptions, v registry.Version, pool *workers.Pool, log *slog.Logger) (admission.Config, error) {
	cfg := admission.Config{
		MaxQueueWait:      o.maxQueueWait,
		MaxQueuedRequests: o.maxQueue,
		MaxQueuedRows:     o.maxQueueRows,
		MaxQueuedBytes:    int64(o.maxQueueBytes),
		MemoryBudget:      int64(o.memoryBudget),
		MaxBatchRows:      o.maxBatchRows,
		MaxBatchDelay:     o.maxBatchDelay,
		OutputRowBytes:    v.Signature.OutputRowBytes(),
		CallFixedCost:     pool.Cost().Fixed,
		CallPerRowCost:    pool.Cost().PerRow,
		Unbounded:         o.unbounded,
	}
	if o.unbounded {
		log.Warn("admission limits are off: the queue and its memory grow without bound")
		return cfg, nil
	}
	if cfg.MemoryBudget == 0 {
		if o.memoryFraction <= 0 || o.memoryFraction > 1 {
			return cfg, fmt.Errorf("--memory-fraction %v: give a share between 0 and 1", o.memoryFraction)
		}
		limit, source, err := admission.MemoryLimit()
		if err != nil {
			return cfg, err
		}
		resident, err := admission.ResidentBytes()
		if err != nil {
			return cfg, fmt.Errorf("reading this process's memory use: %w", err)
		}
		cfg.MemoryBudget = admission.DefaultBudget(limit, resident, o.memoryFraction)
		const floor = 16 << 20
		if cfg.MemoryBudget < floor {
			log.Warn("the loaded model leaves almost no memory; the budget is set to its floor",
				"limit", limit, "limit_source", source, "resident", resident, "budget", floor)
			cfg.MemoryBudget = floor
		}
		log.Info("memory budget", "budget", bytesize.Format(cfg.MemoryBudget), "limit", bytesize.Format(limit),
			"limit_source", source, "resident", bytesize.Format(resident), "fraction", o.memoryFraction)
	}
	if cfg.MaxQueuedBytes == 0 {
		cfg.MaxQueuedBytes = cfg.MemoryBudget / 2
	}
	return cfg, nil
}
