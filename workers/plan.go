package workers

import (
	"fmt"
	"strings"

	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/internal/panics"
)

// Device is where sessions run.
type Device string

// The devices --device accepts.
const (
	Auto Device = "auto"
	CPU  Device = "cpu"
	CUDA Device = "cuda"
)

// ParseDevice reads --device.
func ParseDevice(s string) (Device, error) {
	switch d := Device(strings.ToLower(s)); d {
	case Auto, CPU, CUDA:
		return d, nil
	}
	return "", fmt.Errorf("unknown device %q: use auto, cpu or cuda", s)
}

// Config is what the user asked for; zero values mean "choose for me".
type Config struct {
	Workers        int
	IntraOpThreads int
	Device         Device
	// WorkersPerGPU is the workers on each GPU (default 1); Workers, when
	// set, overrides the total.
	WorkersPerGPU int
	// GPUs are the devices NVML found (gpu.Discover), or why there are none.
	GPUs gpu.Inventory
	// Memory reads a GPU's memory: placement skips a GPU without room,
	// and warm-up measures the device memory a row takes.
	Memory DeviceMemory
	// CUDA tunes the CUDA execution provider.
	CUDA CUDAConfig
	// Panics counts a panic in a worker's call; the call fails with it
	// and the worker goes on.
	Panics *panics.Recorder
}

// Plan is the layout a pool runs with, and why.
type Plan struct {
	Device         Device
	Workers        int
	IntraOpThreads int
	// Reason says how the numbers were chosen, for the start-up log.
	Reason string
	// Oversubscribed is set when the user's numbers ask for more threads
	// than there are cores.
	Oversubscribed bool
	// GPUs lists, per worker, the CUDA number of the GPU it runs on (CUDA
	// plans only).
	GPUs []int
	// Fallback says why a plan that could have used a GPU does not;
	// GPUSeen, that NVML found one all the same (so the fallback is news).
	Fallback string
	GPUSeen  bool
}

// ReferenceWorkers is the reference system's CPU default, 2×vCPU+1: right
// for Python workers that spend half their time outside the model.
func ReferenceWorkers(cpus int) int { return 2*cpus + 1 }

// PlanCPU lays out CPU workers on cpus cores. The reference rule would run
// 2×vCPU+1 workers, but a modelserve worker does nothing except run ONNX
// Runtime (decoding and encoding happen on the server's goroutines), so
// every worker thread wants a whole core: more than one thread per core only
// adds context switches and cache misses. So unless told otherwise, workers
// × intra-op threads equals the cores: one single-threaded worker per core,
// which gives the most throughput under concurrent load; large requests
// still use every core because admission splits them across workers.
func PlanCPU(cfg Config, cpus int) Plan {
	if cpus < 1 {
		cpus = 1
	}
	p := Plan{Device: CPU, Workers: cfg.Workers, IntraOpThreads: cfg.IntraOpThreads}
	switch {
	case p.Workers == 0 && p.IntraOpThreads == 0:
		p.Workers, p.IntraOpThreads = cpus, 1
		p.Reason = fmt.Sprintf("one single-threaded worker per core (%d cores); the reference rule's %d workers would oversubscribe them",
			cpus, ReferenceWorkers(cpus))
	case p.Workers == 0:
		p.Workers = max(1, cpus/p.IntraOpThreads)
		p.Reason = fmt.Sprintf("%d intra-op threads each on %d cores", p.IntraOpThreads, cpus)
	case p.IntraOpThreads == 0:
		p.IntraOpThreads = max(1, cpus/p.Workers)
		p.Reason = fmt.Sprintf("%d workers share %d cores", p.Workers, cpus)
	default:
		p.Reason = "as configured"
	}
	p.Oversubscribed = p.Workers*p.IntraOpThreads > cpus
	return p
}
