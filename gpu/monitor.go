package gpu

import (
	"context"
	"log/slog"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Monitor samples the devices on its own ticker and keeps the latest
// sample of each: metrics and admission read that, so no request ever
// waits on NVML. A device that stops answering is marked down until it
// answers again.
type Monitor struct {
	b       Backend
	devices []Device
	log     *slog.Logger

	mu      sync.RWMutex
	latest  []Sample
	up      []bool
	sampled time.Time

	stop chan struct{}
	done chan struct{}
}

// DefaultSampleInterval is how often a Monitor samples by default.
const DefaultSampleInterval = 2 * time.Second

// NewMonitor initializes the backend for the inventory's devices and takes
// a first sample; Start runs the ticker. Close releases the backend.
func NewMonitor(b Backend, inv Inventory, log *slog.Logger) (*Monitor, error) {
	if err := b.Init(); err != nil {
		return nil, err
	}
	if _, err := b.Count(); err != nil {
		b.Shutdown()
		return nil, err
	}
	m := &Monitor{b: b, devices: inv.Devices, log: log,
		latest: make([]Sample, len(inv.Devices)), up: make([]bool, len(inv.Devices))}
	m.Sample()
	return m, nil
}

// Sample reads every device now.
func (m *Monitor) Sample() {
	samples := make([]Sample, len(m.devices))
	up := make([]bool, len(m.devices))
	for k, d := range m.devices {
		s, err := m.b.Sample(d.Index)
		if err != nil {
			m.mu.RLock()
			was := m.up[k]
			m.mu.RUnlock()
			if was {
				m.log.Warn("a GPU stopped answering; its workers get no work until it is back", "gpu", d.Index, "uuid", d.UUID, "error", err.Error())
			}
			continue
		}
		samples[k], up[k] = s, true
	}
	m.mu.Lock()
	for k := range m.devices {
		if !m.up[k] && up[k] && !m.sampled.IsZero() {
			m.log.Info("a GPU answers again", "gpu", m.devices[k].Index, "uuid", m.devices[k].UUID)
		}
	}
	m.latest, m.up, m.sampled = samples, up, time.Now()
	m.mu.Unlock()
}

// Start samples every interval until Close.
func (m *Monitor) Start(interval time.Duration) {
	m.stop, m.done = make(chan struct{}), make(chan struct{})
	go func() {
		defer close(m.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.Sample()
			}
		}
	}()
}

// Close stops the ticker and releases the backend.
func (m *Monitor) Close() error {
	if m.stop != nil {
		close(m.stop)
		<-m.done
		m.stop = nil
	}
	return m.b.Shutdown()
}

// Latest is device k's (k is the CUDA ordinal) last sample, and whether it
// answered then.
func (m *Monitor) Latest(k int) (Sample, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if k < 0 || k >= len(m.latest) {
		return Sample{}, false
	}
	return m.latest[k], m.up[k]
}

// MemoryUsed reads device k's used memory now, for measurements at load;
// it bypasses the ticker.
func (m *Monitor) MemoryUsed(ctx context.Context, k int) (uint64, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	s, err := m.b.Sample(m.devices[k].Index)
	return s.MemoryUsed, err
}

// Describe and Collect make the monitor a Prometheus collector of the
// latest samples, labelled by NVML index and UUID.
func (m *Monitor) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range metricDescs {
		ch <- d.desc
	}
}

type metricDesc struct {
	desc  *prometheus.Desc
	kind  prometheus.ValueType
	value func(Sample) float64
}

var gpuLabels = []string{"gpu", "uuid"}

// metricDescs describe the device metrics; descriptors are immutable.
var metricDescs = []metricDesc{
	{prometheus.NewDesc("modelserve_gpu_up", "Whether the GPU answered its last sample (1) or not (0).", gpuLabels, nil),
		prometheus.GaugeValue, nil},
	{prometheus.NewDesc("modelserve_gpu_utilization_ratio", "Share of the last sample period in which a kernel ran.", gpuLabels, nil),
		prometheus.GaugeValue, func(s Sample) float64 { return float64(s.Utilization) / 100 }},
	{prometheus.NewDesc("modelserve_gpu_memory_used_bytes", "Device memory in use, by every process.", gpuLabels, nil),
		prometheus.GaugeValue, func(s Sample) float64 { return float64(s.MemoryUsed) }},
	{prometheus.NewDesc("modelserve_gpu_memory_total_bytes", "Device memory.", gpuLabels, nil),
		prometheus.GaugeValue, func(s Sample) float64 { return float64(s.MemoryTotal) }},
	{prometheus.NewDesc("modelserve_gpu_power_watts", "Power drawn.", gpuLabels, nil),
		prometheus.GaugeValue, func(s Sample) float64 { return float64(s.PowerMilliwatts) / 1000 }},
	{prometheus.NewDesc("modelserve_gpu_power_limit_watts", "Enforced power limit.", gpuLabels, nil),
		prometheus.GaugeValue, func(s Sample) float64 { return float64(s.PowerLimitMilliwatts) / 1000 }},
	{prometheus.NewDesc("modelserve_gpu_temperature_celsius", "GPU die temperature.", gpuLabels, nil),
		prometheus.GaugeValue, func(s Sample) float64 { return float64(s.TemperatureCelsius) }},
	{prometheus.NewDesc("modelserve_gpu_energy_joules_total", "Energy used since the driver loaded.", gpuLabels, nil),
		prometheus.CounterValue, func(s Sample) float64 { return float64(s.EnergyMillijoules) / 1000 }},
}

// Collect reports the latest samples; a device that did not answer
// reports only modelserve_gpu_up 0.
func (m *Monitor) Collect(ch chan<- prometheus.Metric) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, d := range m.devices {
		labels := []string{strconv.Itoa(d.Index), d.UUID}
		up := 0.0
		if m.up[k] {
			up = 1
		}
		ch <- prometheus.MustNewConstMetric(metricDescs[0].desc, prometheus.GaugeValue, up, labels...)
		if !m.up[k] {
			continue
		}
		for _, md := range metricDescs[1:] {
			ch <- prometheus.MustNewConstMetric(md.desc, md.kind, md.value(m.latest[k]), labels...)
		}
	}
}
