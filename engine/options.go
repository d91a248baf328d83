package engine

import (
	"log/slog"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/internal/panics"
)

// Options are how a version is run: where, on how many workers, and how
// admission bounds what waits. Zero values take the defaults, and the
// version's registry settings where it has them.
type Options struct {
	Device Device
	// Workers is how many sessions run at once (0: one per core on the
	// CPU, one per GPU); IntraOpThreads the threads of each (0: the
	// cores divided among the workers); WorkersPerGPU, on GPUs.
	Workers, IntraOpThreads, WorkersPerGPU int
	GPU                                    GPUOptions
	Admission                              AdmissionOptions
}

// GPUOptions are the CUDA sessions' settings and how GPU memory bounds
// admission. Empty values take the version's registry settings.
type GPUOptions struct {
	MemLimit            int64
	ArenaExtendStrategy string
	ConvAlgoSearch      string
	CopyInDefaultStream bool
	TensorRT            bool
	// DeviceBytesPerRow is the GPU memory one row takes (0: the
	// version's setting, else measured at load).
	DeviceBytesPerRow int64
	// MemoryMargin is the share of each GPU's memory admission leaves
	// free; SampleInterval how often the GPUs are read.
	MemoryMargin   float64
	SampleInterval time.Duration
}

// DefaultGPU are the GPU options serve starts from.
func DefaultGPU() GPUOptions {
	return GPUOptions{CopyInDefaultStream: true, MemoryMargin: 0.1, SampleInterval: gpu.DefaultSampleInterval}
}

// AdmissionOptions bound a version's queue and memory.
type AdmissionOptions struct {
	// MaxQueueWait bounds a request's predicted wait (0: the default,
	// 50 ms or a call worth making).
	MaxQueueWait time.Duration
	// MaxQueue is a backstop on requests waiting; MaxQueueRows (0: none)
	// and MaxQueueBytes (0: half the budget) bound what waits too.
	MaxQueue      int
	MaxQueueRows  int
	MaxQueueBytes int64
	// MemoryBudget bounds what admitted requests hold (0: MemoryFraction
	// of the memory left once the model is loaded).
	MemoryBudget   int64
	MemoryFraction float64
	// MaxBatchRows is the most rows in one call (0: the version's
	// setting, else 64); MaxBatchDelay how long a free worker waits to
	// fill one (nil: the version's setting, else auto).
	MaxBatchRows  int
	MaxBatchDelay *BatchDelay
	// Unbounded turns every limit off, for comparisons.
	Unbounded bool
}

// Env is what a loaded version reports to: its log, the metrics registry
// (the version labels its own with model and version), the recorder of
// panics in its workers and dispatchers (nil: none counted), and the
// tracer of the calls that run sampled requests (nil: none traced).
type Env struct {
	Log     *slog.Logger
	Metrics prometheus.Registerer
	Panics  *panics.Recorder
	Tracer  trace.Tracer
}

func (e Env) log() *slog.Logger {
	if e.Log == nil {
		return slog.New(slog.DiscardHandler)
	}
	return e.Log
}

func (e Env) metrics() prometheus.Registerer {
	if e.Metrics == nil {
		return prometheus.NewRegistry()
	}
	return e.Metrics
}
