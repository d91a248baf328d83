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

// lifeMetrics count the loads and unloads of every model's versions.
type lifeMetrics struct {
	loads   *prometheus.CounterVec
	seconds *prometheus.HistogramVec
}

func newLifeMetrics(reg prometheus.Registerer) (lifeMetrics, error) {
	var m lifeMetrics
	var err error
	if m.loads, err = shared(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelserve_model_loads_total",
		Help: "Versions loaded (event load: outcome ok or failed) and unloaded (event unload), by model.",
	}, []string{"model", "event", "outcome"})); err != nil {
		return m, fmt.Errorf("registering load metrics: %w", err)
	}
	if m.seconds, err = shared(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "modelserve_model_load_seconds",
		Help:    "Time to load a version (checksum, sessions, warm-up) or to unload it, by model and event.",
		Buckets: prometheus.ExponentialBuckets(0.01, 2.5, 12),
	}, []string{"model", "event"})); err != nil {
		return m, fmt.Errorf("registering load metrics: %w", err)
	}
	return m, nil
}

func (m lifeMetrics) record(model, event string, err error, d time.Duration) {
	outcome := "ok"
	if err != nil {
		outcome = "failed"
	}
	m.loads.WithLabelValues(model, event, outcome).Inc()
	m.seconds.WithLabelValues(model, event).Observe(d.Seconds())
}
