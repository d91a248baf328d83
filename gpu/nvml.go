package gpu

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// NVML is the Backend on a real machine: NVIDIA's management library,
// loaded at Init. Without the library, Init returns ErrNoLibrary.
type NVML struct {
	lib nvml.Interface
	// handles caches the device handles Count found.
	handles []nvml.Device
}

// NewNVML returns the NVML backend; nothing is loaded until Init.
func NewNVML() *NVML { return &NVML{lib: nvml.New()} }

func check(ret nvml.Return, what string) error {
	if ret == nvml.SUCCESS {
		return nil
	}
	return fmt.Errorf("%s: %w", what, nvmlError(ret))
}

func nvmlError(ret nvml.Return) error { return errors.New(ret.Error()) }

// driverDirs are where drivers mounted into containers keep their
// libraries, when the loader's path leaves them out.
var driverDirs = []string{"/usr/local/nvidia/lib64", "/usr/local/nvidia/lib", "/usr/lib64/nvidia", "/usr/lib/x86_64-linux-gnu/nvidia/current"}

// Init loads libnvidia-ml.so.1 (from the loader's path, else from the
// usual driver folders) and initializes it.
func (n *NVML) Init() error {
	ret := n.lib.Init()
	if ret == nvml.ERROR_LIBRARY_NOT_FOUND {
		for _, d := range driverDirs {
			p := filepath.Join(d, "libnvidia-ml.so.1")
			if _, err := os.Stat(p); err == nil {
				n.lib = nvml.New(nvml.WithLibraryPath(p))
				if ret = n.lib.Init(); ret != nvml.ERROR_LIBRARY_NOT_FOUND {
					break
				}
			}
		}
	}
	switch ret {
	case nvml.SUCCESS:
		return nil
	case nvml.ERROR_LIBRARY_NOT_FOUND:
		return ErrNoLibrary
	case nvml.ERROR_DRIVER_NOT_LOADED:
		return fmt.Errorf("%w: the NVIDIA driver is not loaded", ErrNoDevice)
	default:
		return check(ret, "initializing NVML")
	}
}

// Shutdown releases NVML.
func (n *NVML) Shutdown() error { return check(n.lib.Shutdown(), "shutting NVML down") }

// Driver reads the driver's versions.
func (n *NVML) Driver() (Driver, error) {
	var d Driver
	var ret nvml.Return
	if d.Version, ret = n.lib.SystemGetDriverVersion(); ret != nvml.SUCCESS {
		return d, check(ret, "reading the driver version")
	}
	d.NVMLVersion, _ = n.lib.SystemGetNVMLVersion()
	d.CUDAVersion, _ = n.lib.SystemGetCudaDriverVersion()
	return d, nil
}

// Count counts the GPUs NVML sees.
func (n *NVML) Count() (int, error) {
	c, ret := n.lib.DeviceGetCount()
	if err := check(ret, "counting GPUs"); err != nil {
		return 0, err
	}
	n.handles = make([]nvml.Device, c)
	for i := range c {
		if n.handles[i], ret = n.lib.DeviceGetHandleByIndex(i); ret != nvml.SUCCESS {
			n.handles[i] = nil
		}
	}
	return c, nil
}

func (n *NVML) device(i int) (nvml.Device, error) {
	if i < len(n.handles) && n.handles[i] != nil {
		return n.handles[i], nil
	}
	d, ret := n.lib.DeviceGetHandleByIndex(i)
	return d, check(ret, fmt.Sprintf("GPU %d", i))
}

// Info reads what does not change about GPU i.
func (n *NVML) Info(i int) (Info, error) {
	d, err := n.device(i)
	if err != nil {
		return Info{}, err
	}
	info := Info{Index: i}
	var ret nvml.Return
	if info.UUID, ret = d.GetUUID(); ret != nvml.SUCCESS {
		return info, check(ret, fmt.Sprintf("GPU %d's UUID", i))
	}
	info.Name, _ = d.GetName()
	mem, ret := d.GetMemoryInfo()
	if err := check(ret, fmt.Sprintf("GPU %d's memory", i)); err != nil {
		return info, err
	}
	info.MemoryTotal = mem.Total
	return info, nil
}

// Sample reads GPU i now. Memory is required; readings a device does not
// support (power on some boards) stay zero.
func (n *NVML) Sample(i int) (Sample, error) {
	d, err := n.device(i)
	if err != nil {
		return Sample{}, err
	}
	mem, ret := d.GetMemoryInfo()
	if err := check(ret, fmt.Sprintf("GPU %d's memory", i)); err != nil {
		return Sample{}, err
	}
	s := Sample{MemoryTotal: mem.Total, MemoryUsed: mem.Used, MemoryFree: mem.Free}
	if u, ret := d.GetUtilizationRates(); ret == nvml.SUCCESS {
		s.Utilization = u.Gpu
	}
	if p, ret := d.GetPowerUsage(); ret == nvml.SUCCESS {
		s.PowerMilliwatts = p
	}
	if p, ret := d.GetEnforcedPowerLimit(); ret == nvml.SUCCESS {
		s.PowerLimitMilliwatts = p
	}
	if t, ret := d.GetTemperature(nvml.TEMPERATURE_GPU); ret == nvml.SUCCESS {
		s.TemperatureCelsius = t
	}
	if e, ret := d.GetTotalEnergyConsumption(); ret == nvml.SUCCESS {
		s.EnergyMillijoules = e
	}
	return s, nil
}
