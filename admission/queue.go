package admission

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/model"
)

// ErrOverloaded means the queue is full: the caller should retry later.
var ErrOverloaded = errors.New("too many requests")

// ErrClosed means the queue is shutting down.
var ErrClosed = errors.New("the server is shutting down")

// Runner runs one batch; a workers.Pool is the real one. Size is how many
// batches it can run at once.
type Runner interface {
	Run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error)
	Size() int
}

// Config bounds the queue.
type Config struct {
	// MaxQueued is how many requests may wait for a worker.
	MaxQueued int
}

// DefaultMaxQueued is the queue bound when none is configured.
const DefaultMaxQueued = 256

// Queue admits batches and runs them on a Runner, one dispatcher per
// worker, so a free worker always takes the oldest waiting batch.
type Queue struct {
	runner Runner
	jobs   chan *job
	stop   chan struct{}
	wg     sync.WaitGroup
	// mu orders Submit against Close: nothing is queued after the drain.
	mu     sync.RWMutex
	closed bool

	depth    prometheus.Gauge
	rejected *prometheus.CounterVec
}

type job struct {
	ctx    context.Context
	inputs []model.Tensor
	done   chan result
}

type result struct {
	outputs []model.Tensor
	err     error
}

// New starts a queue in front of r, registering its metrics with reg.
func New(r Runner, cfg Config, reg prometheus.Registerer) (*Queue, error) {
	if cfg.MaxQueued <= 0 {
		cfg.MaxQueued = DefaultMaxQueued
	}
	q := &Queue{
		runner: r,
		jobs:   make(chan *job, cfg.MaxQueued),
		stop:   make(chan struct{}),
		depth: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modelserve_queue_requests",
			Help: "Requests admitted and waiting for a worker.",
		}),
		rejected: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelserve_admission_rejections_total",
			Help: "Requests refused or dropped before running, by reason.",
		}, []string{"reason"}),
	}
	for _, c := range []prometheus.Collector{q.depth, q.rejected} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering admission metrics: %w", err)
		}
	}
	for range r.Size() {
		q.wg.Add(1)
		go q.dispatch()
	}
	return q, nil
}

// Submit queues a batch and waits for its outputs. A full queue answers
// ErrOverloaded at once; a caller that gives up (ctx) leaves its batch to
// be skipped rather than run.
func (q *Queue) Submit(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	j := &job{ctx: ctx, inputs: inputs, done: make(chan result, 1)}
	q.mu.RLock()
	if q.closed {
		q.mu.RUnlock()
		return nil, ErrClosed
	}
	q.depth.Inc()
	select {
	case q.jobs <- j:
		q.mu.RUnlock()
	default:
		q.mu.RUnlock()
		q.depth.Dec()
		q.rejected.WithLabelValues("queue_full").Inc()
		return nil, ErrOverloaded
	}
	select {
	case r := <-j.done:
		return r.outputs, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (q *Queue) dispatch() {
	defer q.wg.Done()
	for {
		// Shutdown wins over waiting work: select alone picks at random.
		select {
		case <-q.stop:
			q.drain()
			return
		default:
		}
		select {
		case <-q.stop:
			q.drain()
			return
		case j := <-q.jobs:
			q.depth.Dec()
			q.runJob(j)
		}
	}
}

func (q *Queue) runJob(j *job) {
	if err := j.ctx.Err(); err != nil {
		q.rejected.WithLabelValues(reason(err)).Inc()
		j.done <- result{err: err}
		return
	}
	out, err := q.runner.Run(j.ctx, j.inputs)
	j.done <- result{outputs: out, err: err}
}

// drain answers what is still queued at shutdown, so nothing admitted is
// left without an answer.
func (q *Queue) drain() {
	for {
		select {
		case j := <-q.jobs:
			q.depth.Dec()
			j.done <- result{err: ErrClosed}
		default:
			return
		}
	}
}

func reason(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return "deadline"
	}
	return "canceled"
}

// Close stops taking batches, answers the queued ones with ErrClosed and
// waits for running ones to finish.
func (q *Queue) Close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.stop)
	}
	q.mu.Unlock()
	q.wg.Wait()
}
