package engine

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/internal/bytesize"
)

// Queue is an admission queue in front of a version's workers.
type Queue struct {
	q *admission.Queue
	// used is when a request last came (Unix nanoseconds), for eviction
	// of the least recently used idle model.
	used atomic.Int64
}

// Admit puts an admission queue in front of the workers, bounded by o,
// its metrics in metrics labelled with the version (nil: the workers'
// registry). On GPUs it also keeps in-flight rows within their free
// memory. A version runs one queue; doctor --run makes several in turn.
func (w *Workers) Admit(o AdmissionOptions, metrics prometheus.Registerer) (*Queue, error) {
	return w.AdmitWith(Options{Admission: o, GPU: w.o.GPU}, metrics)
}

// admitLike is Admit for a version that takes over from like (an alias
// moved): its queue starts from the cost like has learned of the calls
// served, not from a warm-up measured while like kept the cores busy.
func (w *Workers) admitLike(o AdmissionOptions, like *Queue) (*Queue, error) {
	fixed, perRow := like.q.Cost()
	q, err := w.admit(Options{Admission: o, GPU: w.o.GPU}, nil, fixed, perRow)
	if err != nil {
		return nil, err
	}
	// And from like's share of the memory budget.
	c := like.q.Config()
	q.q.SetMemoryBudget(c.MemoryBudget, c.MaxQueuedBytes)
	return q, nil
}

// AdmitWith is Admit with the GPU options too (the margin of memory
// admission leaves free, the device bytes of a row) taken from o rather
// than from the options the workers started with.
func (w *Workers) AdmitWith(eo Options, metrics prometheus.Registerer) (*Queue, error) {
	return w.admit(eo, metrics, w.pool.Cost().Fixed, w.pool.Cost().PerRow)
}

// admit puts the queue in front of the workers, its cost model starting
// from fixed and perRow.
func (w *Workers) admit(eo Options, metrics prometheus.Registerer, fixed, perRow time.Duration) (*Queue, error) {
	o, log := eo.Admission, w.env.log()
	if metrics == nil {
		metrics = w.metrics // taken off with the workers
	} else {
		metrics = prometheus.WrapRegistererWith(prometheus.Labels{"model": w.v.Name, "version": w.v.Version}, metrics)
	}
	cfg, err := w.admissionConfig(o)
	if err != nil {
		return nil, err
	}
	cfg.Panics = w.env.Panics
	cfg.CallFixedCost, cfg.CallPerRowCost = fixed, perRow
	if w.mon != nil && !o.Unbounded {
		limit, err := w.gpuAdmission(eo.GPU)
		if err != nil {
			return nil, err
		}
		cfg.Limits = append(cfg.Limits, limit)
	}
	q, err := admission.New(w.pool, cfg, metrics)
	if err != nil {
		return nil, err
	}
	c := q.Config()
	log.Info("admission", "max_batch_rows", c.MaxBatchRows, "max_batch_delay", c.MaxBatchDelay.String(),
		"max_queue_wait", c.MaxQueueWait.String(), "max_queue", c.MaxQueuedRequests, "max_queue_rows", c.MaxQueuedRows, "max_queue_bytes", c.MaxQueuedBytes,
		"memory_budget", c.MemoryBudget, "unbounded", c.Unbounded)
	out := &Queue{q: q}
	out.used.Store(time.Now().UnixNano())
	return out, nil
}

// AdmitArrival claims room for a request before its body is parsed.
func (q *Queue) AdmitArrival(a Arrival) (*Ticket, error) {
	q.used.Store(time.Now().UnixNano())
	return q.q.AdmitArrival(a)
}

// Admit claims room for a body of n bytes at normal priority.
func (q *Queue) Admit(n int64) (*Ticket, error) {
	q.used.Store(time.Now().UnixNano())
	return q.q.Admit(n)
}

// idleSince is when the queue last took a request, and whether nothing it
// admitted is still running.
func (q *Queue) idleSince() (time.Time, bool) {
	return time.Unix(0, q.used.Load()), q.q.Outstanding() == 0
}

// Estimate is about how long a request of rows rows would take from now.
func (q *Queue) Estimate(rows int) time.Duration { return q.q.Estimate(rows) }

// Limits are a queue's bounds in force, defaults filled in.
type Limits struct {
	MaxBatchRows int
	MaxQueueWait time.Duration
	MemoryBudget int64
}

// Limits are the bounds in force, defaults filled in.
func (q *Queue) Limits() Limits {
	c := q.q.Config()
	return Limits{MaxBatchRows: c.MaxBatchRows, MaxQueueWait: c.MaxQueueWait, MemoryBudget: c.MemoryBudget}
}

// Close refuses new requests and answers what waits with ErrClosed.
func (q *Queue) Close() { q.q.Close() }

// Drain waits until every request admitted has been answered (or ctx
// ends): a version switched away from finishes what it took.
func (q *Queue) Drain(ctx context.Context) error {
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for q.q.Outstanding() > 0 {
		select {
		case <-ctx.Done():
			return fmt.Errorf("draining: %d requests still running: %w", q.q.Outstanding(), ctx.Err())
		case <-tick.C:
		}
	}
	return nil
}

// ShareMemory splits one memory budget among the models a process serves,
// in equal shares, so that their queues together never hold more than it:
// o.MemoryBudget when given, else o.MemoryFraction of the memory left now
// that every model is loaded. Each queue's waiting bytes are half its
// share unless o.MaxQueueBytes says otherwise. With limits off
// (Unbounded) there is nothing to share.
func ShareMemory(models []*Model, o AdmissionOptions, log *slog.Logger) error {
	if o.Unbounded || len(models) < 2 {
		return nil // one model's queue measured the budget after loading it
	}
	budget, err := processBudget(o, log)
	if err != nil {
		return err
	}
	share := budget / int64(len(models))
	queued := o.MaxQueueBytes
	if queued == 0 {
		queued = share / 2
	}
	for _, m := range models {
		m.mu.Lock()
		if m.current != nil {
			m.current.q.SetMemoryBudget(share, queued)
		}
		m.mu.Unlock()
	}
	log.Info("memory budget shared", "budget", bytesize.Format(budget), "models", len(models), "each", bytesize.Format(share))
	return nil
}

// processBudget is o.MemoryBudget, or o.MemoryFraction (default one
// half) of the memory left: the cgroup's limit, else the machine's
// memory, less what this process holds now.
func processBudget(o AdmissionOptions, log *slog.Logger) (int64, error) {
	if o.MemoryBudget > 0 {
		return o.MemoryBudget, nil
	}
	fraction := o.MemoryFraction
	if fraction == 0 {
		fraction = DefaultMemoryFraction
	}
	if fraction < 0 || fraction > 1 {
		return 0, fmt.Errorf("memory fraction %v: give a share between 0 and 1", fraction)
	}
	limit, source, err := admission.MemoryLimit()
	if err != nil {
		return 0, err
	}
	resident, err := admission.ResidentBytes()
	if err != nil {
		return 0, fmt.Errorf("reading this process's memory use: %w", err)
	}
	budget := admission.DefaultBudget(limit, resident, fraction)
	const floor = 16 << 20
	if budget < floor {
		log.Warn("the loaded models leave almost no memory; the budget is set to its floor",
			"limit", limit, "limit_source", source, "resident", resident, "budget", floor)
		budget = floor
	}
	log.Info("memory budget", "budget", bytesize.Format(budget), "limit", bytesize.Format(limit),
		"limit_source", source, "resident", bytesize.Format(resident), "fraction", fraction)
	return budget, nil
}

// admissionConfig sizes the queue and the memory budget. It runs once the
// workers have loaded, so what they hold is no longer counted as free.
func (w *Workers) admissionConfig(o AdmissionOptions) (cfg admission.Config, err error) {
	log, v := w.env.log(), w.v
	cfg = admission.Config{
		MaxQueueWait:      o.MaxQueueWait,
		MaxQueuedRequests: o.MaxQueue,
		MaxQueuedRows:     o.MaxQueueRows,
		MaxQueuedBytes:    o.MaxQueueBytes,
		MemoryBudget:      o.MemoryBudget,
		MaxBatchRows:      o.MaxBatchRows,
		MaxBatchDelay:     admission.AutoDelay,
		OutputRowBytes:    v.Signature.OutputRowBytes(),
		Unbounded:         o.Unbounded,
		Tracer:            w.env.Tracer,
	}
	// The options win over the version's own settings, which win over
	// the defaults.
	if cfg.MaxBatchRows == 0 {
		cfg.MaxBatchRows = v.Settings.MaxBatchRows
	}
	// Unset, a call takes 64 rows at most, or 1024 for a model warm-up
	// found to run a large call as cheaply a row as a small one: a fast
	// model then runs a large request in a few calls instead of many,
	// each with its fixed cost and hand-off, while one whose rows grow
	// dearer in large calls (activations outgrowing the caches) keeps
	// to calls it runs well.
	if cfg.MaxBatchRows == 0 {
		cfg.MaxBatchRows = admission.DefaultMaxBatchRows
		if w.pool.Cost().Scales {
			cfg.MaxBatchRows = admission.ScalingMaxBatchRows
		}
	}
	switch {
	case o.MaxBatchDelay != nil:
		cfg.MaxBatchDelay = *o.MaxBatchDelay
	case v.Settings.MaxBatchDelay != "":
		d, err := admission.ParseBatchDelay(v.Settings.MaxBatchDelay)
		if err != nil {
			return cfg, fmt.Errorf("%s's settings: %w", v.Ref(), err)
		}
		cfg.MaxBatchDelay = d
	}
	if o.Unbounded {
		log.Warn("admission limits are off: the queue and its memory grow without bound")
		return cfg, nil
	}
	if cfg.MemoryBudget, err = processBudget(o, log); err != nil {
		return cfg, err
	}
	if cfg.MaxQueuedBytes == 0 {
		cfg.MaxQueuedBytes = cfg.MemoryBudget / 2
	}
	return cfg, nil
}

// DefaultMemoryFraction is the share of the memory left after loading that
// becomes the budget.
const DefaultMemoryFraction = 0.5

// DeviceRowBytes is the GPU memory admission counts for a row, and where
// the number comes from: the options, else the version's settings, else
// what a batch took at warm-up, else four times the row's host bytes.
func (w *Workers) DeviceRowBytes() (int64, string) {
	return w.deviceRowBytes(w.o.GPU)
}

func (w *Workers) deviceRowBytes(o GPUOptions) (int64, string) {
	switch {
	case o.DeviceBytesPerRow > 0:
		return o.DeviceBytesPerRow, "the device bytes per row asked for"
	case w.v.Settings.DeviceBytesPerRow > 0:
		return w.v.Settings.DeviceBytesPerRow, "the version's settings"
	case w.pool.DeviceBytesPerRow() > 0:
		return w.pool.DeviceBytesPerRow(), "measured at load"
	}
	// The warm-up batch fit in the arena as it was: no growth to read.
	return 4 * w.v.Signature.RowBytes(), "4× the row's input and output bytes (nothing to measure at load)"
}

// gpuAdmission is the admission limit that keeps in-flight rows within
// the GPUs' free memory, at the device bytes a row takes.
func (w *Workers) gpuAdmission(o GPUOptions) (*gpu.MemoryLimit, error) {
	log := w.env.log()
	hostRow := w.v.Signature.RowBytes()
	deviceRow, source := w.deviceRowBytes(o)
	var ordinals []int
	for _, k := range w.pool.Plan().GPUs {
		if !slices.Contains(ordinals, k) {
			ordinals = append(ordinals, k)
		}
	}
	limit, err := gpu.NewMemoryLimit(w.mon, ordinals, o.MemoryMargin, deviceRow, hostRow)
	if err != nil {
		return nil, err
	}
	log.Info("GPU memory admission", "device_bytes_per_row", deviceRow, "source", source,
		"rows_in_flight", limit.Rows(), "margin", o.MemoryMargin)
	return limit, nil
}
