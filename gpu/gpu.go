package gpu

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Info is what does not change about a device.
type Info struct {
	Index       int // NVML's index: PCI bus order
	UUID        string
	Name        string
	MemoryTotal uint64
}

// Sample is a device's state at one moment. A reading the device does not
// support stays zero.
type Sample struct {
	MemoryTotal, MemoryUsed, MemoryFree uint64
	// Utilization is the percent of the last sample period a kernel ran.
	Utilization uint32
	// PowerMilliwatts and PowerLimitMilliwatts are the draw and the
	// enforced limit.
	PowerMilliwatts, PowerLimitMilliwatts uint32
	TemperatureCelsius                    uint32
	// EnergyMillijoules is the energy used since the driver loaded.
	EnergyMillijoules uint64
}

// Driver is what NVML says of the installed driver.
type Driver struct {
	Version     string // e.g. 550.54.15
	NVMLVersion string
	// CUDAVersion is the newest CUDA the driver supports, e.g. 12040 for 12.4.
	CUDAVersion int
}

// CUDA writes the driver's CUDA version as 12.4.
func (d Driver) CUDA() string {
	if d.CUDAVersion == 0 {
		return "unknown"
	}
	return fmt.Sprintf("%d.%d", d.CUDAVersion/1000, d.CUDAVersion%1000/10)
}

// Backend reads the GPUs: NVML on a real machine, a fake in tests.
type Backend interface {
	Init() error
	Shutdown() error
	Driver() (Driver, error)
	Count() (int, error)
	Info(index int) (Info, error)
	Sample(index int) (Sample, error)
}

// Why there may be no GPU.
var (
	// ErrNoLibrary: libnvidia-ml.so.1 is not there, so there is no NVIDIA
	// driver, or the container was started without GPU access.
	ErrNoLibrary = errors.New("no NVML: libnvidia-ml.so.1 is not installed (no NVIDIA driver, or a container started without GPU access)")
	// ErrNoDevice: NVML works but lists no GPU.
	ErrNoDevice = errors.New("NVML lists no GPU")
	// ErrHidden: GPUs exist, but the environment hides every one.
	ErrHidden = errors.New("every GPU is hidden")
)

// Device is a GPU this process may use: NVML's view of it, and the number
// CUDA (and so ONNX Runtime's device_id) gives it.
type Device struct {
	Info
	Ordinal int
}

// Inventory is the GPUs this process may use, or why there are none.
type Inventory struct {
	Driver  Driver
	Devices []Device
	// Err says why Devices is empty (it wraps ErrNoLibrary, ErrNoDevice or
	// ErrHidden), or why NVML failed; nil when there are devices.
	Err error
	// Notes are things worth saying at start (a visibility variable read).
	Notes []string
}

// Why says why the inventory holds no GPU: Err, else ErrNoDevice.
func (inv Inventory) Why() error {
	if inv.Err != nil {
		return inv.Err
	}
	return ErrNoDevice
}

// Discover asks the backend for the GPUs and applies the visibility
// variables (lookupEnv reads the environment, as os.LookupEnv does: an
// empty CUDA_VISIBLE_DEVICES hides every GPU, an unset one none):
// NVIDIA_VISIBLE_DEVICES, which
// a container runtime uses to pick GPUs, then CUDA_VISIBLE_DEVICES, whose
// order gives the CUDA numbers. It never fails; an Inventory without
// devices says why.
func Discover(b Backend, lookupEnv func(string) (string, bool)) Inventory {
	var inv Inventory
	if err := b.Init(); err != nil {
		inv.Err = err
		return inv
	}
	defer b.Shutdown()
	inv.Driver, _ = b.Driver()
	n, err := b.Count()
	if err != nil {
		inv.Err = fmt.Errorf("NVML: counting GPUs: %w", err)
		return inv
	}
	var all []Info
	for i := range n {
		info, err := b.Info(i)
		if err != nil {
			inv.Notes = append(inv.Notes, fmt.Sprintf("GPU %d is left out: %v", i, err))
			continue
		}
		all = append(all, info)
	}
	if len(all) == 0 {
		inv.Err = ErrNoDevice
		return inv
	}
	visible := all
	for _, v := range []string{"NVIDIA_VISIBLE_DEVICES", "CUDA_VISIBLE_DEVICES"} {
		value, set := lookupEnv(v)
		if !set {
			continue
		}
		var note string
		visible, note = applyVisibility(v, value, visible, n)
		if note != "" {
			inv.Notes = append(inv.Notes, note)
		}
	}
	if len(visible) == 0 {
		inv.Err = fmt.Errorf("%w: %s", ErrHidden, strings.Join(inv.Notes, "; "))
		return inv
	}
	for k, info := range visible {
		inv.Devices = append(inv.Devices, Device{Info: info, Ordinal: k})
	}
	return inv
}

// applyVisibility keeps the devices a visibility variable names, in its
// order: indices, UUIDs or UUID prefixes, as CUDA reads them; it stops at
// the first entry that names no device, as CUDA does.
func applyVisibility(name, value string, devices []Info, nvmlCount int) ([]Info, string) {
	v := strings.TrimSpace(value)
	switch strings.ToLower(v) {
	case "all":
		return devices, ""
	case "", "none", "void", "-1":
		return nil, fmt.Sprintf("%s=%q hides every GPU", name, value)
	}
	entries := strings.Split(v, ",")
	if name == "NVIDIA_VISIBLE_DEVICES" && len(entries) == nvmlCount {
		// Inside a container the runtime has already applied it: NVML
		// sees just the GPUs it names, renumbered from 0.
		return devices, ""
	}
	var out []Info
	for _, e := range entries {
		e = strings.TrimSpace(e)
		d, ok := find(devices, e)
		if !ok {
			return out, fmt.Sprintf("%s=%q: %q names no GPU, so it and what follows are ignored", name, value, e)
		}
		out = append(out, d)
	}
	return out, fmt.Sprintf("%s=%q: using %d of %d GPUs", name, value, len(out), len(devices))
}

func find(devices []Info, entry string) (Info, bool) {
	if i, err := strconv.Atoi(entry); err == nil {
		for _, d := range devices {
			if d.Index == i {
				return d, true
			}
		}
		return Info{}, false
	}
	var match []Info
	for _, d := range devices {
		if entry != "" && strings.HasPrefix(d.UUID, entry) || strings.HasPrefix(d.UUID, "GPU-"+entry) {
			match = append(match, d)
		}
	}
	if len(match) != 1 {
		return Info{}, false
	}
	return match[0], true
}
