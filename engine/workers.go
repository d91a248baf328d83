package engine

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/onnxrt"
	"github.com/modelserve/modelserve/registry"
	"github.com/modelserve/modelserve/workers"
)

// Workers are a version's sessions, started and warmed up, and the GPU
// monitor when they run on GPUs. Admit puts a queue in front of them.
type Workers struct {
	v       registry.Version
	o       Options
	env     Env
	metrics *tracked // labelled with the version; unregistered on Close
	pool    *workers.Pool
	mon     *gpu.Monitor // nil unless the workers are on GPUs
	release func()
	life    processMetrics
	// held is the host memory the sessions took at load; deviceHeld
	// the GPUs' memory (0 on the CPU).
	held, deviceHeld int64
}

// Start checks the version's model file against its checksum, loads ONNX
// Runtime and starts the workers (on the GPUs NVML finds, unless told the
// CPU); on GPUs it samples them every o.GPU.SampleInterval and exports
// their metrics. A panic in a worker fails its batch and is counted in
// env.Panics.
func Start(ctx context.Context, reg *registry.Registry, v registry.Version, o Options, env Env) (w *Workers, err error) {
	start := time.Now()
	life, err := newProcessMetrics(env.metrics())
	if err != nil {
		return nil, err
	}
	defer func() { life.record(v.Name, "load", err, time.Since(start)) }()
	residentBefore, _ := admission.ResidentBytes()
	log := env.log()
	metrics := &tracked{Registerer: prometheus.WrapRegistererWith(prometheus.Labels{"model": v.Name, "version": v.Version}, env.metrics())}
	if err := reg.Verify(ctx, v); err != nil {
		return nil, err
	}
	rt, err := onnxrt.Load("")
	if err != nil {
		return nil, err
	}
	log.Info("ONNX Runtime loaded", "ort_version", rt.Version, "library", rt.LibraryPath)
	if o.GPU.SampleInterval <= 0 {
		o.GPU.SampleInterval = gpu.DefaultSampleInterval
	}
	cfg := workers.Config{Workers: o.Workers, IntraOpThreads: o.IntraOpThreads, Device: o.Device, WorkersPerGPU: o.WorkersPerGPU,
		CUDA: cudaConfig(o.GPU, v.Settings), Panics: env.Panics}
	var mon *gpu.Monitor
	release := func() {}
	if o.Device != workers.CPU {
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
				cfg.CUDA.MinFreeBytes = uint64(o.GPU.MemoryMargin * float64(smallestGPU(cfg.GPUs)))
			}
		}
	}
	deviceBefore := deviceUsed(ctx, mon, len(cfg.GPUs.Devices))
	pool, err := workers.Start(ctx, rt, workers.Model{
		Path:    v.ModelPath(),
		Inputs:  v.Signature.Inputs,
		Outputs: v.Signature.FetchedOutputs(),
	}, cfg, log, metrics)
	if err != nil {
		release()
		metrics.unregisterAll()
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
			metrics.unregisterAll()
			return nil, fmt.Errorf("registering GPU metrics: %w", err)
		}
		mon.Start(o.GPU.SampleInterval)
	}
	// What the version holds: the host memory its sessions took (the
	// process's growth while loading, so a concurrent load blurs it), and
	// on GPUs the device memory (the GPUs' growth, every process's).
	residentAfter, _ := admission.ResidentBytes()
	held := max(0, residentAfter-residentBefore)
	gauges := []prometheus.Collector{prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "modelserve_model_memory_bytes",
		Help: "Host memory the version's sessions took when it loaded.",
	}, func() float64 { return float64(held) })}
	var deviceHeld int64
	if after := deviceUsed(ctx, mon, len(cfg.GPUs.Devices)); mon != nil && after >= 0 && deviceBefore >= 0 {
		deviceHeld = max(0, after-deviceBefore)
		gauges = append(gauges, prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "modelserve_model_device_memory_bytes",
			Help: "GPU memory the version's sessions took when it loaded (every GPU's growth while it loaded).",
		}, func() float64 { return float64(deviceHeld) }))
	}
	for _, g := range gauges {
		if err := metrics.Register(g); err != nil {
			pool.Close(ctx)
			release()
			metrics.unregisterAll()
			return nil, fmt.Errorf("registering model metrics: %w", err)
		}
	}
	log.Info("model loaded", "seconds", time.Since(start).Seconds(), "memory", bytesize.Format(held), "device_memory", bytesize.Format(deviceHeld))
	return &Workers{v: v, o: o, env: env, metrics: metrics, life: life, pool: pool, mon: mon, release: release, held: held, deviceHeld: deviceHeld}, nil
}

// deviceUsed is the memory used on the n GPUs mon samples, -1 when there
// is no monitor or a GPU cannot be read.
func deviceUsed(ctx context.Context, mon *gpu.Monitor, n int) int64 {
	if mon == nil {
		return -1
	}
	var sum int64
	for k := range n {
		used, err := mon.MemoryUsed(ctx, k)
		if err != nil {
			return -1
		}
		sum += int64(used)
	}
	return sum
}

// Close waits for the running calls (or ctx) and releases every session
// and the GPU monitor.
func (w *Workers) Close(ctx context.Context) error {
	start := time.Now()
	err := w.pool.Close(ctx)
	w.release()
	w.metrics.unregisterAll()
	w.life.record(w.v.Name, "unload", err, time.Since(start))
	return err
}

// Version is the registry version the workers run.
func (w *Workers) Version() registry.Version { return w.v }

// Run runs one call of the rows on a free worker, with no admission: for
// measuring the workers themselves.
func (w *Workers) Run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	return w.pool.Run(ctx, inputs)
}

// Placement says where the workers run: the device they ended on, how
// many, and on which GPUs (one ordinal per worker).
type Placement struct {
	Device         Device
	Workers        int
	IntraOpThreads int
	GPUs           []int
}

// Placement reports where the workers run.
func (w *Workers) Placement() Placement {
	plan := w.pool.Plan()
	return Placement{Device: plan.Device, Workers: plan.Workers, IntraOpThreads: plan.IntraOpThreads, GPUs: plan.GPUs}
}

// DeviceBytesPerRow is the GPU memory a row took at warm-up (0 on the CPU
// or when nothing could be measured).
func (w *Workers) DeviceBytesPerRow() int64 { return w.pool.DeviceBytesPerRow() }

// Monitor is the GPU monitor, nil unless the workers run on GPUs.
func (w *Workers) Monitor() *gpu.Monitor { return w.mon }

// cudaConfig takes the GPU session settings from the options, else from
// the version's settings.
func cudaConfig(o GPUOptions, st registry.Settings) workers.CUDAConfig {
	copyIn := o.CopyInDefaultStream
	c := workers.CUDAConfig{MemLimit: o.MemLimit, ArenaExtendStrategy: o.ArenaExtendStrategy, ConvAlgoSearch: o.ConvAlgoSearch,
		CopyInDefaultStream: &copyIn, TensorRT: o.TensorRT}
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

// Plan is how serve would lay out the workers: the device, how many, the
// threads of each, the GPU of each, and why.
type Plan = workers.Plan

// PlanWorkers says how Start would lay out the workers with o on this
// machine (GPUs as NVML found them, mon their memory when sampled),
// without loading a model; a CUDA plan is probed by loading the provider.
func PlanWorkers(o Options, rt *onnxrt.Runtime, inv gpu.Inventory, mon *gpu.Monitor) (Plan, error) {
	cfg := workers.Config{Device: o.Device, Workers: o.Workers, WorkersPerGPU: o.WorkersPerGPU, IntraOpThreads: o.IntraOpThreads, GPUs: inv}
	if mon != nil {
		cfg.Memory = mon
	}
	return workers.Choose(cfg, runtime.GOMAXPROCS(0), rt, func(p workers.Plan) error { return rt.ProbeCUDA(p.GPUs[0]) })
}

// PlanCPU lays out o's workers on cpus cores of the CPU, as Start does
// there.
func PlanCPU(o Options, cpus int) Plan {
	return workers.PlanCPU(workers.Config{Workers: o.Workers, IntraOpThreads: o.IntraOpThreads}, cpus)
}

// ReferenceWorkers is the reference system's CPU default, 2×vCPU+1, for
// comparisons.
func ReferenceWorkers(cpus int) int { return workers.ReferenceWorkers(cpus) }

// Arena extend strategies of a GPU session.
const (
	SameAsRequested = workers.SameAsRequested
	NextPowerOfTwo  = workers.NextPowerOfTwo
)

// ValidateGPUSettings checks an arena extend strategy and a cuDNN
// convolution search setting, as a version's settings hold them.
func ValidateGPUSettings(arena, convAlgoSearch string) error {
	return workers.CUDAConfig{ArenaExtendStrategy: arena, ConvAlgoSearch: convAlgoSearch}.Validate()
}
