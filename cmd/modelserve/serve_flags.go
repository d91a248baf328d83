package main

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/modelserve/modelserve/inferencelog"

	"github.com/modelserve/modelserve/tracing"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/server"
	"github.com/spf13/pflag"
)

type serveOptions struct {
	model        string // predict-batch's one model
	models       []string
	all          bool
	defaultModel string
	host         string
	port         int
	grpcPort     int
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
	maxBatchDelay     engine.BatchDelay
	requestTimeout    time.Duration
	maxRequestTimeout time.Duration
	unbounded         bool

	// gateway protocol
	async        string
	resultTTL    time.Duration
	resultMemory byteSize
	contentMD5   bool

	debugAddr      string
	followInterval time.Duration
	maxLoaded      int
	modelControl   bool
	evictIdle      time.Duration
	modelMemory    byteSize

	sec securityOptions

	// inference log
	inferenceLog          string
	inferenceLogSample    float64
	inferenceLogFunctions []string
	inferenceLogErrors    bool
	inferenceLogFileBytes byteSize
	inferenceLogFileAge   time.Duration
	inferenceLogQueue     byteSize

	// tracing
	otlpEndpoint string
	otlpProtocol string
	traceSample  float64

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
	d := engine.DefaultGPU()
	f.IntVar(&o.workersPerGPU, "workers-per-gpu", 1, "workers on each GPU, each with its own session (--workers sets the total instead)")
	f.Var(&o.gpuMemLimit, "gpu-mem-limit", "cap each GPU session's memory arena, e.g. 8Gi (default: registry setting, else none)")
	f.StringVar(&o.arenaStrategy, "arena-extend-strategy", "", "how a GPU session's arena grows: kSameAsRequested or kNextPowerOfTwo (default: registry setting, else kSameAsRequested)")
	f.StringVar(&o.convAlgoSearch, "cudnn-conv-algo-search", "", "how cuDNN picks convolution algorithms: EXHAUSTIVE, HEURISTIC or DEFAULT (default: registry setting, else ONNX Runtime's)")
	f.BoolVar(&o.copyInDefaultStream, "copy-in-default-stream", d.CopyInDefaultStream, "copy inputs and outputs on the GPU's default stream (do_copy_in_default_stream)")
	f.BoolVar(&o.tensorRT, "tensorrt", false, "put the TensorRT provider before CUDA when its library is there")
	f.Var(&o.deviceBytesPerRow, "device-bytes-per-row", "the GPU memory one row takes, for admission (default: registry setting, else measured at load)")
	f.Float64Var(&o.gpuMemoryMargin, "gpu-memory-margin", d.MemoryMargin, "share of each GPU's memory admission leaves free")
	f.DurationVar(&o.gpuSampleInterval, "gpu-sample-interval", d.SampleInterval, "how often GPUs are sampled for metrics and admission")
}

// newServeOptions returns serve's options at their defaults, the flags
// registered on f (a throwaway set gives the defaults alone).
func newServeOptions(f *pflag.FlagSet) *serveOptions {
	o := &serveOptions{maxBodyBytes: server.DefaultMaxBodyBytes, maxBatchDelay: engine.AutoDelay,
		minBodyRate: server.DefaultMinBodyRate, maxHeaderBytes: server.DefaultMaxHeaderBytes}
	o.flags(f)
	return o
}

// flags registers serve's flags on f, each at its default.
func (o *serveOptions) flags(f *pflag.FlagSet) {
	f.StringArrayVar(&o.models, "model", nil, "model to serve, NAME[:VERSION] (default version: the latest); repeat it to serve several (MODELSERVE_MODEL=iris,dlrm:3)")
	f.SetAnnotation("model", envList, []string{"true"})
	f.BoolVar(&o.all, "all", false, "serve every model in the registry, each at its latest version")
	f.StringVar(&o.defaultModel, "default-model", "", "the model /predict and /<function> answer for (default: the only one served)")
	f.StringVar(&o.host, "host", "0.0.0.0", "address to listen on")
	f.IntVar(&o.port, "port", 8080, "port to listen on")
	f.IntVar(&o.grpcPort, "grpc-port", -1, "port for the Open Inference Protocol over gRPC (inference.GRPCInferenceService, grpc.health.v1, reflection); -1: none, 0: any free port")
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

	f.DurationVar(&o.maxQueueWait, "max-queue-wait", 0, "longest a request may be predicted to wait for a worker, from the cost of the work ahead of it (default: 50ms, or 8 times a call's fixed cost when that is longer); batches are cut to fit it; low priority is shed at half, high at twice")
	f.StringVar(&o.defaultPriority, "default-priority", "normal", "priority of a request without "+server.PriorityHeader+": high, normal or low")
	f.IntVar(&o.maxQueue, "max-queue", engine.DefaultMaxQueued, "requests that may wait for a worker (a backstop: the wait bounds the queue first)")
	f.IntVar(&o.maxQueueRows, "max-queue-rows", 0, "rows that may wait for a worker (default: no bound of its own; the wait bounds them)")
	f.Var(&o.maxQueueBytes, "max-queue-bytes", "input bytes that may wait for a worker (default: half the memory budget)")
	f.Var(&o.memoryBudget, "memory-budget", "bytes admitted requests may hold, e.g. 2Gi (default: --memory-fraction of the memory left once the model is loaded)")
	f.Float64Var(&o.memoryFraction, "memory-fraction", engine.DefaultMemoryFraction, "share of the memory left after loading that becomes the budget (cgroup limit, else physical memory)")
	f.IntVar(&o.maxBatchRows, "max-batch-rows", 0, "most rows in one ONNX Runtime call (default: registry setting, else 64, or 1024 for a model whose large calls cost no more a row; fewer when a call would outlast --max-queue-wait); 1 turns batching off")
	f.Var((*batchDelayFlag)(&o.maxBatchDelay), "max-batch-delay", "how long a free worker may wait to fill a batch: auto (wait a few times the model's fixed cost per call, only while rows keep coming), a duration, or 0 (default: registry setting, else auto)")
	f.DurationVar(&o.requestTimeout, "request-timeout", server.DefaultRequestTimeout, "a request's deadline unless its "+server.TimeoutHeader+" header says otherwise")
	f.DurationVar(&o.maxRequestTimeout, "max-request-timeout", server.DefaultMaxRequestTimeout, "the longest deadline a header may ask for")
	f.BoolVar(&o.unbounded, "unbounded-queue", false, "turn admission limits off (for comparisons: the queue and memory then grow without bound)")
	f.StringVar(&o.async, "async", "30s", "gateway batches answered 202 and polled: never, always, or those expected to take longer than this duration")
	f.DurationVar(&o.resultTTL, "result-ttl", server.DefaultResultTTL, "how long a gateway batch's answer is kept for retries and polls (at least, memory permitting)")
	f.Var(&o.resultMemory, "result-memory", "memory for kept answers, oldest evicted first (default: a quarter of the memory budget)")
	f.BoolVar(&o.contentMD5, "content-md5", false, "add a Content-MD5 header to answers")
	f.DurationVar(&o.followInterval, "follow-interval", time.Second, "how often a model named by an alias (--model iris:prod) checks whether the alias moved")
	f.BoolVar(&o.modelControl, "model-control", false, "answer the model repository API (/v2/repository: load, unload) though callers do not authenticate; with authentication it is on, for the admin scope")
	f.IntVar(&o.maxLoaded, "max-loaded-models", 0, "most models loaded at once, counting those loaded through /v2/repository (default: no bound)")
	f.DurationVar(&o.evictIdle, "evict-idle", 0, "let a load that needs room unload models idle this long, least recently used first (default: refuse the load)")
	f.Var(&o.modelMemory, "model-memory", "host memory the loaded models may hold together (default: what --memory-fraction leaves of the memory limit)")
	f.StringVar(&o.debugAddr, "debug-addr", "", "serve Go's profiler (/debug/pprof) on this address, e.g. 127.0.0.1:6060 (off by default)")
	f.StringVar(&o.inferenceLog, "inference-log", "", "write a sample of the requests (inputs, outputs, who, when, latency, status) to rolling Parquet files in this folder, listed in its manifest.json once whole (off by default; one server a folder)")
	f.Float64Var(&o.inferenceLogSample, "inference-log-sample", 1, "share of requests the inference log keeps, from 0 to 1")
	f.StringSliceVar(&o.inferenceLogFunctions, "inference-log-functions", nil, "functions the inference log keeps, e.g. predict,infer (default: every one)")
	f.BoolVar(&o.inferenceLogErrors, "inference-log-errors", false, "keep failed requests in the inference log too, with their error")
	f.Var(&o.inferenceLogFileBytes, "inference-log-file-bytes", "size at which an inference log file is closed and the next begun (default 64Mi)")
	f.DurationVar(&o.inferenceLogFileAge, "inference-log-file-age", inferencelog.DefaultMaxFileAge, "age at which an inference log file is closed and the next begun")
	f.Var(&o.inferenceLogQueue, "inference-log-queue-bytes", "memory of requests waiting for the inference log's writer; past it, requests are dropped from the log (counted), never slowed (default 64Mi)")
	f.StringVar(&o.otlpEndpoint, "otlp-endpoint", "", "send traces over OTLP to this collector: http://collector:4318 (HTTP; the path defaults to /v1/traces), or collector:4317 with --otlp-protocol grpc (default: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT or OTEL_EXPORTER_OTLP_ENDPOINT; with none, no tracing)")
	f.StringVar(&o.otlpProtocol, "otlp-protocol", "", "OTLP's transport: http/protobuf or grpc (default: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL or OTEL_EXPORTER_OTLP_PROTOCOL, else http/protobuf)")
	f.Float64Var(&o.traceSample, "trace-sample", tracing.DefaultSample, "share of requests traced when no traceparent decides (a caller's sampled flag is followed); 0 turns tracing off (not given: OTEL_TRACES_SAMPLER when set)")
	o.gpuFlags(f)
	o.sec.flags(f)
}

// inferenceLog opens the inference log the flags ask for (nil for none).
func (o *serveOptions) openInferenceLog(reg prometheus.Registerer, log *slog.Logger) (*inferencelog.Log, error) {
	if o.inferenceLog == "" {
		return nil, nil
	}
	return inferencelog.Open(inferencelog.Config{Dir: o.inferenceLog, Sample: o.inferenceLogSample, Functions: o.inferenceLogFunctions,
		Errors: o.inferenceLogErrors, MaxFileBytes: int64(o.inferenceLogFileBytes), MaxFileAge: o.inferenceLogFileAge,
		MaxQueueBytes: int64(o.inferenceLogQueue), Registerer: reg, Log: log})
}

// tracing is the tracing configuration the flags (and OTEL_* variables)
// set; f tells which flags were given.
func (o *serveOptions) tracing(f *pflag.FlagSet, reg prometheus.Registerer, log *slog.Logger) tracing.Config {
	return tracing.Config{Endpoint: o.otlpEndpoint, Protocol: o.otlpProtocol, Sample: o.traceSample,
		SampleFromEnv: !f.Changed("trace-sample") && os.Getenv("OTEL_TRACES_SAMPLER") != "",
		Version:       version, Registerer: reg, Log: log}
}

// engine is the engine's options, as the flags set them; f tells which
// were given (a batch delay not given is the version's setting).
func (o *serveOptions) engine(f *pflag.FlagSet) (engine.Options, error) {
	device, err := engine.ParseDevice(o.device)
	if err != nil {
		return engine.Options{}, err
	}
	if o.memoryFraction <= 0 || o.memoryFraction > 1 {
		return engine.Options{}, fmt.Errorf("--memory-fraction %v: give a share between 0 and 1", o.memoryFraction)
	}
	eo := engine.Options{
		Device: device, Workers: o.workers, IntraOpThreads: o.intraOp, WorkersPerGPU: o.workersPerGPU,
		GPU: engine.GPUOptions{MemLimit: int64(o.gpuMemLimit), ArenaExtendStrategy: o.arenaStrategy, ConvAlgoSearch: o.convAlgoSearch,
			CopyInDefaultStream: o.copyInDefaultStream, TensorRT: o.tensorRT, DeviceBytesPerRow: int64(o.deviceBytesPerRow),
			MemoryMargin: o.gpuMemoryMargin, SampleInterval: o.gpuSampleInterval},
		Admission: engine.AdmissionOptions{MaxQueueWait: o.maxQueueWait, MaxQueue: o.maxQueue, MaxQueueRows: o.maxQueueRows,
			MaxQueueBytes: int64(o.maxQueueBytes), MemoryBudget: int64(o.memoryBudget), MemoryFraction: o.memoryFraction,
			MaxBatchRows: o.maxBatchRows, Unbounded: o.unbounded},
	}
	if f.Changed("max-batch-delay") {
		d := o.maxBatchDelay
		eo.Admission.MaxBatchDelay = &d
	}
	return eo, nil
}
