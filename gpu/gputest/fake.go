// Package gputest is a fake GPU backend for tests: the GPUs of a machine
// that has none, which a test can fill up or take away.
package gputest

import (
	"errors"
	"fmt"
	"sync"

	"github.com/modelserve/modelserve/gpu"
)

// Fake is a gpu.Backend over made-up devices. Its methods are safe for
// concurrent use.
type Fake struct {
	mu      sync.Mutex
	driver  gpu.Driver
	devices []*device
	noLib   bool
	inits   int
	samples int
}

type device struct {
	info   gpu.Info
	sample gpu.Sample
	gone   bool
}

// New fakes n GPUs of 24 GiB named like an NVIDIA L4, each with 20 GiB
// free, at 42% utilization, 70 W of a 72 W limit, 55 °C.
func New(n int) *Fake {
	f := &Fake{driver: gpu.Driver{Version: "550.54.15", NVMLVersion: "12.550.54.15", CUDAVersion: 12040}}
	for i := range n {
		const total = 24 << 30
		f.devices = append(f.devices, &device{
			info: gpu.Info{Index: i, UUID: fmt.Sprintf("GPU-%08x-0000-0000-0000-00000000000%d", 0xabc0+i, i), Name: "NVIDIA L4", MemoryTotal: total},
			sample: gpu.Sample{MemoryTotal: total, MemoryUsed: 4 << 30, MemoryFree: total - 4<<30, Utilization: 42,
				PowerMilliwatts: 70_000, PowerLimitMilliwatts: 72_000, TemperatureCelsius: 55, EnergyMillijoules: 1_234_567},
		})
	}
	return f
}

// NoLibrary fakes a machine without libnvidia-ml.so.1.
func NoLibrary() *Fake { return &Fake{noLib: true} }

// SetUsed sets GPU i's used memory (free is the rest).
func (f *Fake) SetUsed(i int, used uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &f.devices[i].sample
	s.MemoryUsed, s.MemoryFree = used, s.MemoryTotal-used
}

// AddUsed adds to GPU i's used memory, as an allocation would.
func (f *Fake) AddUsed(i int, n uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &f.devices[i].sample
	s.MemoryUsed += n
	s.MemoryFree = s.MemoryTotal - s.MemoryUsed
}

// SetGone makes GPU i stop answering (fallen off the bus), or come back.
func (f *Fake) SetGone(i int, gone bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.devices[i].gone = gone
}

// Samples counts the samples taken so far.
func (f *Fake) Samples() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.samples
}

// Init fails as NVML does without its library.
func (f *Fake) Init() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.noLib {
		return gpu.ErrNoLibrary
	}
	f.inits++
	return nil
}

// Shutdown balances Init.
func (f *Fake) Shutdown() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.inits == 0 {
		return errors.New("NVML is not initialized")
	}
	f.inits--
	return nil
}

// Driver reports a 550 driver supporting CUDA 12.4.
func (f *Fake) Driver() (gpu.Driver, error) { return f.driver, nil }

// Count counts the devices, gone ones included, as NVML lists them.
func (f *Fake) Count() (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.devices), nil
}

// Info describes device i.
func (f *Fake) Info(i int) (gpu.Info, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.devices[i].gone {
		return gpu.Info{}, errors.New("ERROR_GPU_IS_LOST")
	}
	return f.devices[i].info, nil
}

// Sample reads device i, or fails as a lost GPU does.
func (f *Fake) Sample(i int) (gpu.Sample, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.samples++
	if f.devices[i].gone {
		return gpu.Sample{}, errors.New("ERROR_GPU_IS_LOST")
	}
	return f.devices[i].sample, nil
}
