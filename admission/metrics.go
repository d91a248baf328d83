package admission

import (
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

type metrics struct {
	queuedRequests prometheus.Gauge
	queuedRows     prometheus.Gauge
	inflight       prometheus.Gauge
	queueWait      *prometheus.HistogramVec
	predicted      prometheus.Histogram
	batchRows      prometheus.Histogram
	fillDelay      prometheus.Gauge
	callFixed      prometheus.Gauge
	rejected       *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer, budget func() int64, target func() float64, callFixed time.Duration) (*metrics, error) {
	m := &metrics{
		queuedRequests: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserve_queue_requests",
			Help: "Requests admitted and waiting for a worker.",
		}),
		queuedRows: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserve_queue_rows",
			Help: "Rows admitted and waiting for a worker.",
		}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserve_inflight_bytes",
			Help: "Bytes held by admitted requests not yet answered: bodies, inputs, estimated outputs.",
		}),
		queueWait: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelserve_queue_wait_seconds",
			Help:    "Time rows wait in the queue before a worker takes them, by priority.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2.5, 15),
		}, []string{"priority"}),
		predicted: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "modelserve_queue_wait_predicted_seconds",
			Help:    "The wait predicted for each arriving request while others queue, from the cost of the work ahead of it.",
			Buckets: prometheus.ExponentialBuckets(25e-6, 2.5, 15),
		}),
		batchRows: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "modelserve_batch_rows",
			Help:    "Rows per ONNX Runtime call, after coalescing and splitting.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		fillDelay: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserve_batch_delay_seconds",
			Help: "How long the last batch that was not full could wait for more rows (auto: a few times the fixed cost of a call, while rows keep coming).",
		}),
		callFixed: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserve_call_fixed_cost_seconds",
			Help: "Cost of one ONNX Runtime call before its first row, measured at load.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelserve_admission_rejections_total",
			Help: "Requests refused or dropped before running, by reason (queue_wait, fair_share, queue_full, memory, deadline, canceled) and priority.",
		}, []string{"reason", "priority"}),
	}
	budgetGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "modelserve_memory_budget_bytes",
		Help: "The memory budget in-flight bytes are held under (0: none).",
	}, func() float64 { return float64(budget()) })
	targetGauge := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "modelserve_queue_wait_target_seconds",
		Help: "The queue wait admission allows a normal-priority request now (low: half, high: twice): --max-queue-wait, lowered while the measured wait runs above it.",
	}, target)
	m.callFixed.Set(callFixed.Seconds())
	for _, r := range []string{ReasonQueueWait, ReasonFairShare, ReasonQueueFull, ReasonMemory, ReasonDeadline, ReasonCanceled} {
		m.rejected.WithLabelValues(r, Normal.String())
	}
	m.queueWait.WithLabelValues(Normal.String())
	for _, c := range []prometheus.Collector{m.queuedRequests, m.queuedRows, m.inflight, m.queueWait, m.predicted, m.batchRows, m.fillDelay, m.callFixed, m.rejected, budgetGauge, targetGauge} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering admission metrics: %w", err)
		}
	}
	return m, nil
}
