package gpu_test

import (
	"errors"
	"log/slog"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/gpu/gputest"
)

func env(vars map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) {
		v, ok := vars[k]
		return v, ok
	}
}

func TestDiscover_visibleDevicesInCUDAOrder(t *testing.T) {
	uuid := func(i int) string { d, _ := gputest.New(4).Info(i); return d.UUID }
	tests := []struct {
		name    string
		backend gpu.Backend
		env     map[string]string
		want    []int // NVML indices, in CUDA order
		err     error
		note    string
	}{
		{"no NVML library", gputest.NoLibrary(), nil, nil, gpu.ErrNoLibrary, ""},
		{"NVML without devices", gputest.New(0), nil, nil, gpu.ErrNoDevice, ""},
		{"every device", gputest.New(4), nil, []int{0, 1, 2, 3}, nil, ""},
		{"CUDA_VISIBLE_DEVICES reorders", gputest.New(4), map[string]string{"CUDA_VISIBLE_DEVICES": "2,0"}, []int{2, 0}, nil, "using 2 of 4"},
		{"by UUID prefix", gputest.New(4), map[string]string{"CUDA_VISIBLE_DEVICES": uuid(3)[:12]}, []int{3}, nil, ""},
		{"an empty CUDA_VISIBLE_DEVICES hides all", gputest.New(4), map[string]string{"CUDA_VISIBLE_DEVICES": ""}, nil, gpu.ErrHidden, "hides every GPU"},
		{"CUDA stops at a wrong entry", gputest.New(4), map[string]string{"CUDA_VISIBLE_DEVICES": "1,7,2"}, []int{1}, nil, `"7" names no GPU`},
		{"NVIDIA_VISIBLE_DEVICES=none", gputest.New(2), map[string]string{"NVIDIA_VISIBLE_DEVICES": "none"}, nil, gpu.ErrHidden, ""},
		{"NVIDIA_VISIBLE_DEVICES already applied in a container", gputest.New(2), map[string]string{"NVIDIA_VISIBLE_DEVICES": "5,6"}, []int{0, 1}, nil, ""},
		{"NVIDIA_VISIBLE_DEVICES then CUDA_VISIBLE_DEVICES", gputest.New(4),
			map[string]string{"NVIDIA_VISIBLE_DEVICES": "1,2,3", "CUDA_VISIBLE_DEVICES": "3"}, []int{3}, nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inv := gpu.Discover(tt.backend, env(tt.env))
			if !errors.Is(inv.Err, tt.err) {
				t.Fatalf("Err %v, want %v", inv.Err, tt.err)
			}
			var got []int
			for k, d := range inv.Devices {
				if d.Ordinal != k {
					t.Errorf("device %d has CUDA number %d", k, d.Ordinal)
				}
				got = append(got, d.Index)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("devices %v, want %v", got, tt.want)
			}
			if tt.note != "" && !strings.Contains(strings.Join(inv.Notes, "; ")+" "+errString(inv.Err), tt.note) {
				t.Errorf("notes %q, want one with %q", inv.Notes, tt.note)
			}
		})
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestNVML_onThisMachine runs the real NVML backend: here, with no NVIDIA
// driver, it reports "no GPU" cleanly; on a GPU node it lists the GPUs.
func TestNVML_onThisMachine(t *testing.T) {
	inv := gpu.Discover(gpu.NewNVML(), os.LookupEnv)
	if len(inv.Devices) == 0 {
		if !errors.Is(inv.Err, gpu.ErrNoLibrary) && !errors.Is(inv.Err, gpu.ErrNoDevice) && !errors.Is(inv.Err, gpu.ErrHidden) {
			t.Fatalf("no GPU, but not said cleanly: %v", inv.Err)
		}
		t.Logf("no GPU: %v", inv.Err)
		return
	}
	if inv.Err != nil || inv.Driver.Version == "" {
		t.Fatalf("GPUs with an error %v, driver %q", inv.Err, inv.Driver.Version)
	}
	for _, d := range inv.Devices {
		t.Logf("GPU %d %s %s, %d MiB", d.Index, d.UUID, d.Name, d.MemoryTotal>>20)
	}
}

func newMonitor(t *testing.T, f *gputest.Fake) *gpu.Monitor {
	t.Helper()
	inv := gpu.Discover(f, env(nil))
	m, err := gpu.NewMonitor(f, inv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// gauges gathers every gpu metric as "name{gpu} value".
func gauges(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName() + "{" + label(m, "gpu") + "}"
			switch {
			case m.Gauge != nil:
				out[key] = m.GetGauge().GetValue()
			case m.Counter != nil:
				out[key] = m.GetCounter().GetValue()
			}
		}
	}
	return out
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestMonitor_metricsFromSamplesAndAGPUThatDisappears(t *testing.T) {
	f := gputest.New(2)
	m := newMonitor(t, f)
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	got := gauges(t, reg)
	want := map[string]float64{
		"modelserve_gpu_up{1}":                  1,
		"modelserve_gpu_utilization_ratio{1}":   0.42,
		"modelserve_gpu_memory_used_bytes{1}":   4 << 30,
		"modelserve_gpu_memory_total_bytes{1}":  24 << 30,
		"modelserve_gpu_power_watts{1}":         70,
		"modelserve_gpu_power_limit_watts{1}":   72,
		"modelserve_gpu_temperature_celsius{1}": 55,
		"modelserve_gpu_energy_joules_total{1}": 1234.567,
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %v, want %v", k, got[k], v)
		}
	}
	// Scrapes read the last sample: NVML is never called on a scrape.
	before := f.Samples()
	gauges(t, reg)
	if f.Samples() != before {
		t.Errorf("a scrape sampled the GPUs %d times", f.Samples()-before)
	}

	f.SetGone(1, true)
	m.Sample()
	got = gauges(t, reg)
	if got["modelserve_gpu_up{1}"] != 0 || got["modelserve_gpu_up{0}"] != 1 {
		t.Errorf("after GPU 1 went: up %v and %v", got["modelserve_gpu_up{0}"], got["modelserve_gpu_up{1}"])
	}
	if _, ok := got["modelserve_gpu_memory_used_bytes{1}"]; ok {
		t.Error("a GPU that does not answer still reports memory")
	}
	if _, up := m.Latest(1); up {
		t.Error("Latest says the lost GPU is up")
	}
	f.SetGone(1, false)
	m.Sample()
	if _, up := m.Latest(1); !up {
		t.Error("the GPU came back, but Latest says it is down")
	}
}

func TestMemoryLimit_freeMemoryLessTheMargin(t *testing.T) {
	f := gputest.New(3)
	f.SetUsed(1, 22<<30) // 2 GiB free: under a 10% margin of 24 GiB
	m := newMonitor(t, f)
	const deviceRow, hostRow = 1 << 20, 1 << 10 // 1 MiB on the GPU, 1 KiB in the queue
	margin := 0.1
	l, err := gpu.NewMemoryLimit(m, []int{0, 1, 2}, margin, deviceRow, hostRow)
	if err != nil {
		t.Fatal(err)
	}
	// GPUs 0 and 2: 20 GiB free less 2.4 GiB each; GPU 1 none.
	perGPU := (int64(20<<30) - int64(margin*float64(24<<30))) / deviceRow
	if got := l.Rows(); got != 2*perGPU {
		t.Errorf("rows %d, want %d", got, 2*perGPU)
	}
	if got := l.Bytes(); got != 2*perGPU*hostRow {
		t.Errorf("bytes %d, want %d", got, 2*perGPU*hostRow)
	}
	f.SetGone(2, true)
	m.Sample()
	if got := l.Rows(); got != perGPU {
		t.Errorf("with GPU 2 gone: rows %d, want %d", got, perGPU)
	}
	f.SetGone(0, true)
	m.Sample()
	if got := l.Bytes(); got != 0 {
		t.Errorf("with every GPU that had room gone: %d bytes, want 0", got)
	}
	if _, err := gpu.NewMemoryLimit(m, []int{1}, 1.5, deviceRow, hostRow); err == nil {
		t.Error("a margin over 1 was taken")
	}
}
