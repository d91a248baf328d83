package tracing

import (
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// queue is the span processor between the requests and the exporter:
// ending a span puts it in a bounded channel, or drops it when the
// channel is full; one goroutine exports what is queued, in batches.
// Unlike the SDK's batch processor it counts what it drops by outcome,
// for /metrics.
type queue struct {
	exp   sdktrace.SpanExporter
	spans chan sdktrace.ReadOnlySpan
	// flushes asks the exporting goroutine to export what is queued now.
	flushes chan chan struct{}
	stop    chan struct{}
	done    chan struct{}
	stopped atomic.Bool
	once    sync.Once
	log     *slog.Logger

	exported, dropped, failed prometheus.Counter
	// lastWarned throttles the log line of failed exports (unix seconds).
	lastWarned atomic.Int64
}

func newQueue(exp sdktrace.SpanExporter, size int, reg prometheus.Registerer, log *slog.Logger) (*queue, error) {
	spans := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelserve_trace_spans_total",
		Help: "Spans ended by sampled requests, by outcome: exported to the OTLP collector, dropped because the export queue was full, or failed to export.",
	}, []string{"outcome"})
	if err := reg.Register(spans); err != nil {
		return nil, err
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	q := &queue{exp: exp, spans: make(chan sdktrace.ReadOnlySpan, size), flushes: make(chan chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{}), log: log,
		exported: spans.WithLabelValues("exported"), dropped: spans.WithLabelValues("dropped"), failed: spans.WithLabelValues("failed")}
	go q.run()
	return q, nil
}

func (q *queue) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd queues a sampled span, never waiting.
func (q *queue) OnEnd(s sdktrace.ReadOnlySpan) {
	if !s.SpanContext().IsSampled() || q.stopped.Load() {
		return
	}
	select {
	case q.spans <- s:
	default:
		q.dropped.Inc()
	}
}

// run exports batches as they fill, or a second after their first span.
func (q *queue) run() {
	defer close(q.done)
	batch := make([]sdktrace.ReadOnlySpan, 0, exportBatch)
	tick := time.NewTimer(exportEvery)
	defer tick.Stop()
	send := func() {
		if len(batch) > 0 {
			q.export(batch)
			clear(batch)
			batch = batch[:0]
		}
		tick.Reset(exportEvery)
	}
	for {
		select {
		case s := <-q.spans:
			batch = append(batch, s)
			if len(batch) == exportBatch {
				send()
			}
		case <-tick.C:
			send()
		case done := <-q.flushes:
			batch = q.take(batch)
			send()
			close(done)
		case <-q.stop:
			batch = q.take(batch)
			send()
			return
		}
	}
}

// take adds what is queued now to batch, exporting each full batch.
func (q *queue) take(batch []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	for {
		select {
		case s := <-q.spans:
			batch = append(batch, s)
			if len(batch) == exportBatch {
				q.export(batch)
				clear(batch)
				batch = batch[:0]
			}
		default:
			return batch
		}
	}
}

func (q *queue) export(batch []sdktrace.ReadOnlySpan) {
	ctx, cancel := context.WithTimeout(context.Background(), exportTimeout)
	defer cancel()
	if err := q.exp.ExportSpans(ctx, batch); err != nil {
		q.failed.Add(float64(len(batch)))
		// One line a minute at most: a collector that is down would
		// otherwise fill the log.
		now := time.Now().Unix()
		if last := q.lastWarned.Load(); now-last >= 60 && q.lastWarned.CompareAndSwap(last, now) {
			q.log.Warn("exporting spans failed; they are dropped", "spans", len(batch), "error", err)
		}
		return
	}
	q.exported.Add(float64(len(batch)))
}

// ForceFlush exports what is queued now.
func (q *queue) ForceFlush(ctx context.Context) error {
	if q.stopped.Load() {
		return nil
	}
	done := make(chan struct{})
	select {
	case q.flushes <- done:
	case <-q.done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Shutdown exports what is queued (within ctx) and stops the exporter.
func (q *queue) Shutdown(ctx context.Context) error {
	q.once.Do(func() {
		q.stopped.Store(true)
		close(q.stop)
	})
	select {
	case <-q.done:
	case <-ctx.Done():
		return ctx.Err()
	}
	return q.exp.Shutdown(ctx)
}
