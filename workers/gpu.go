package workers

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"

	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/onnxrt"
)

// DeviceMemory reads a GPU's memory by its CUDA number: a gpu.Monitor, or
// a fake in tests.
type DeviceMemory interface {
	Latest(ordinal int) (gpu.Sample, bool)
	MemoryUsed(ctx context.Context, ordinal int) (uint64, error)
}

// CUDAConfig tunes the CUDA execution provider of every GPU worker.
type CUDAConfig struct {
	// MemLimit caps each session's arena in bytes (gpu_mem_limit); 0 for
	// none.
	MemLimit int64
	// ArenaExtendStrategy is kSameAsRequested (the default: the arena
	// grows by what is asked, so it does not balloon) or kNextPowerOfTwo.
	ArenaExtendStrategy string
	// ConvAlgoSearch is cudnn_conv_algo_search: EXHAUSTIVE, HEURISTIC or
	// DEFAULT (ONNX Runtime's default: EXHAUSTIVE).
	ConvAlgoSearch string
	// CopyInDefaultStream is do_copy_in_default_stream (default true).
	CopyInDefaultStream *bool
	// TensorRT puts the TensorRT provider before CUDA when its library is
	// there.
	TensorRT bool
	// MinFreeBytes is the free memory a GPU needs to be given workers.
	MinFreeBytes uint64
}

// Arena strategies ONNX Runtime knows.
const (
	SameAsRequested = "kSameAsRequested"
	NextPowerOfTwo  = "kNextPowerOfTwo"
)

// Validate checks the settings before any session opens.
func (c CUDAConfig) Validate() error {
	switch c.ArenaExtendStrategy {
	case "", SameAsRequested, NextPowerOfTwo:
	default:
		return fmt.Errorf("arena extend strategy %q: use %s or %s", c.ArenaExtendStrategy, SameAsRequested, NextPowerOfTwo)
	}
	switch strings.ToUpper(c.ConvAlgoSearch) {
	case "", "EXHAUSTIVE", "HEURISTIC", "DEFAULT":
	default:
		return fmt.Errorf("cuDNN convolution search %q: use EXHAUSTIVE, HEURISTIC or DEFAULT", c.ConvAlgoSearch)
	}
	if c.MemLimit < 0 {
		return fmt.Errorf("GPU memory limit %d: give a positive number of bytes, or 0 for none", c.MemLimit)
	}
	return nil
}

// Settings are the provider options for one session on GPU ordinal.
func (c CUDAConfig) Settings() map[string]string {
	s := map[string]string{"arena_extend_strategy": SameAsRequested, "do_copy_in_default_stream": "1"}
	if c.ArenaExtendStrategy != "" {
		s["arena_extend_strategy"] = c.ArenaExtendStrategy
	}
	if c.MemLimit > 0 {
		s["gpu_mem_limit"] = strconv.FormatInt(c.MemLimit, 10)
	}
	if c.ConvAlgoSearch != "" {
		s["cudnn_conv_algo_search"] = strings.ToUpper(c.ConvAlgoSearch)
	}
	if c.CopyInDefaultStream != nil && !*c.CopyInDefaultStream {
		s["do_copy_in_default_stream"] = "0"
	}
	return s
}

// PlanCUDA spreads GPU workers over the visible GPUs: WorkersPerGPU on each
// (default one, as the reference system runs), or Workers in turn over
// them. A GPU whose free memory is below MinFreeBytes gets none. Each
// worker has one CPU thread for the operators the GPU leaves to the CPU.
func PlanCUDA(cfg Config) (Plan, error) {
	p := Plan{Device: CUDA, IntraOpThreads: max(cfg.IntraOpThreads, 1)}
	var usable []int
	var skipped []string
	for _, d := range cfg.GPUs.Devices {
		if cfg.Memory != nil {
			s, up := cfg.Memory.Latest(d.Ordinal)
			switch {
			case !up:
				skipped = append(skipped, fmt.Sprintf("GPU %d does not answer", d.Index))
				continue
			case s.MemoryFree < cfg.CUDA.MinFreeBytes:
				skipped = append(skipped, fmt.Sprintf("GPU %d has %d MiB free, under the %d MiB needed", d.Index, s.MemoryFree>>20, cfg.CUDA.MinFreeBytes>>20))
				continue
			}
		}
		usable = append(usable, d.Ordinal)
	}
	if len(usable) == 0 {
		if len(skipped) > 0 {
			return p, fmt.Errorf("no GPU can take a worker: %s", strings.Join(skipped, "; "))
		}
		return p, cfg.GPUs.Why()
	}
	perGPU := max(cfg.WorkersPerGPU, 1)
	p.Workers = len(usable) * perGPU
	p.Reason = fmt.Sprintf("%d worker(s) on each of %d GPU(s)", perGPU, len(usable))
	if cfg.Workers > 0 {
		p.Workers = cfg.Workers
		p.Reason = fmt.Sprintf("%d workers spread over %d GPU(s)", p.Workers, len(usable))
	}
	if len(skipped) > 0 {
		p.Reason += "; skipped: " + strings.Join(skipped, "; ")
	}
	// Worker i on GPU i mod n: the first workers cover every GPU.
	for i := range p.Workers {
		p.GPUs = append(p.GPUs, usable[i%len(usable)])
	}
	return p, nil
}

// Choose picks the device and plans the workers: the CPU when asked; else
// the GPUs, if NVML sees one and open (a session, or a probe of the
// provider) succeeds on the plan; else, for auto, the CPU with the reason
// in Plan.Fallback, and for cuda that reason as the error.
func Choose(cfg Config, cores int, rt *onnxrt.Runtime, open func(Plan) error) (Plan, error) {
	if cfg.Device == CPU {
		return PlanCPU(cfg, cores), nil
	}
	plan, err := PlanCUDA(cfg)
	if err == nil {
		if err = open(plan); err == nil {
			return plan, nil
		}
		err = diagnose(rt, err)
	}
	if cfg.Device == CUDA {
		return Plan{}, fmt.Errorf("--device cuda: cannot run on a GPU: %w", err)
	}
	p := PlanCPU(cfg, cores)
	p.Fallback, p.GPUSeen = err.Error(), len(cfg.GPUs.Devices) > 0
	return p, nil
}

// missingLibrary finds the library a loader error names.
var missingLibrary = regexp.MustCompile(`(lib[\w.+-]+\.so[\w.]*): cannot open shared object file`)

// diagnose words why a CUDA session would not open: the provider library
// missing, a CUDA or cuDNN library missing, or another failure.
func diagnose(rt *onnxrt.Runtime, err error) error {
	if lib, ok := rt.ProviderLibrary("cuda"); !ok {
		return fmt.Errorf("the CUDA provider library is missing: this ONNX Runtime %s has no %s beside it; use its GPU build (make ort-gpu, or an image built with --gpu)", rt.Version, lib)
	}
	for _, m := range missingLibrary.FindAllStringSubmatch(err.Error(), -1) {
		if !strings.HasPrefix(m[1], "libonnxruntime") {
			return fmt.Errorf("CUDA libraries are missing: %s cannot be loaded (install the CUDA and cuDNN runtimes ONNX Runtime %s was built for, or use the GPU image): %w", m[1], rt.Version, err)
		}
	}
	return fmt.Errorf("the CUDA execution provider failed to start: %w", err)
}
