package engine

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// tracked registers a version's collectors and remembers them, so that
// unloading the version takes its series off /metrics: a version loaded
// again later (an alias moved back) registers afresh.
type tracked struct {
	prometheus.Registerer
	mu sync.Mutex
	cs []prometheus.Collector
}

func (t *tracked) Register(c prometheus.Collector) error {
	if err := t.Registerer.Register(c); err != nil {
		return err
	}
	t.mu.Lock()
	t.cs = append(t.cs, c)
	t.mu.Unlock()
	return nil
}

func (t *tracked) MustRegister(cs ...prometheus.Collector) {
	for _, c := range cs {
		if err := t.Register(c); err != nil {
			panic(err)
		}
	}
}

// unregisterAll takes every collector registered through t off.
func (t *tracked) unregisterAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, c := range t.cs {
		t.Registerer.Unregister(c)
	}
	t.cs = nil
}

// shared registers c on reg, or returns the collector of the same
// description already there: process-wide metrics every model shares.
func shared[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var are prometheus.AlreadyRegisteredError
	if errors.As(err, &are) {
		if existing, ok := are.ExistingCollector.(C); ok {
			return existing, nil
		}
	}
	return c, err
}

// processMetrics are the engine's own, shared by every model: loads,
// unloads and alias switches, with their durations.
type processMetrics struct {
	loads, switches            *prometheus.CounterVec
	loadSeconds, switchSeconds *prometheus.HistogramVec
}

func newProcessMetrics(reg prometheus.Registerer) (m processMetrics, err error) {
	counter := func(name, help string, labels ...string) *prometheus.CounterVec {
		c, rerr := shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{Name: name, Help: help}, labels))
		err = errors.Join(err, rerr)
		return c
	}
	histogram := func(name, help string, buckets []float64, labels ...string) *prometheus.HistogramVec {
		h, rerr := shared(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: name, Help: help, Buckets: buckets}, labels))
		err = errors.Join(err, rerr)
		return h
	}
	m.loads = counter("modelserve_model_loads_total",
		"Versions loaded (event load: outcome ok or failed) and unloaded (event unload), by model.", "model", "event", "outcome")
	m.loadSeconds = histogram("modelserve_model_load_seconds",
		"Time to load a version (checksum, sessions, warm-up) or to unload it, by model and event.",
		prometheus.ExponentialBuckets(0.01, 2.5, 12), "model", "event")
	m.switches = counter("modelserve_version_switches_total",
		"Moves of a followed alias taken into service (ok) or refused, the old version serving on (failed).", "model", "outcome")
	m.switchSeconds = histogram("modelserve_version_switch_seconds",
		"Time from seeing an alias move to the old version unloaded: load, warm-up, switch and drain.",
		prometheus.ExponentialBuckets(0.05, 2, 12), "model")
	if err != nil {
		return m, fmt.Errorf("registering the engine's metrics: %w", err)
	}
	return m, nil
}

// record counts a load or an unload of a version of model.
func (m processMetrics) record(model, event string, err error, d time.Duration) {
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	m.loads.WithLabelValues(model, event, outcome).Inc()
	m.loadSeconds.WithLabelValues(model, event).Observe(d.Seconds())
}
