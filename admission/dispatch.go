package admission

import (
	"context"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelserve/modelserve/internal/faults"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/model"
)

// dispatch feeds one worker. When a batch has run, the dispatcher takes
// its next batch before answering the callers of the last one: a caller
// that comes straight back with its next request then finds the room the
// taken rows left, instead of a queue that only looks full.
func (q *Queue) dispatch() {
	defer q.wg.Done()
	var batch []*piece
	for {
		if batch == nil {
			if batch = q.next(); batch == nil {
				return
			}
		}
		answer := q.execute(batch)
		batch = q.take()
		answer()
		if batch != nil && q.coalesce {
			batch = q.fill(batch)
		}
	}
}

// take takes a batch if one waits, without waiting.
func (q *Queue) take() []*piece {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil // next drains the queue
	}
	batch := q.takeLocked(nil)
	if batch != nil {
		q.running++
	}
	q.observeQueue()
	return batch
}

// fill lets more rows join a batch taken by take.
func (q *Queue) fill(batch []*piece) []*piece {
	q.mu.Lock()
	defer q.mu.Unlock()
	batch = q.fillLocked(batch)
	q.observeQueue()
	return batch
}

// next waits for work and takes a batch: the oldest live piece, and, when
// the model takes any batch size, the compatible pieces queued behind it up
// to a batch (batchRows), waiting up to MaxBatchDelay for more. It returns nil
// when the queue closes.
func (q *Queue) next() []*piece {
	q.mu.Lock()
	defer q.mu.Unlock()
	for {
		if q.closed {
			q.drainLocked()
			return nil
		}
		if batch := q.takeLocked(nil); batch != nil {
			q.running++
			if q.coalesce {
				batch = q.fillLocked(batch)
			}
			q.observeQueue()
			return batch
		}
		// Rows left for this worker to keep it free for high priority
		// are taken once high-priority requests stop coming.
		var expire <-chan time.Time
		var timer *time.Timer
		if now := q.cfg.Clock(); q.queuedRows > 0 && q.highRecent(now) {
			timer = time.NewTimer(q.highSeen.Add(highWindow).Sub(now))
			expire = timer.C
		}
		q.mu.Unlock()
		select {
		case <-q.wake:
		case <-expire:
		case <-q.stop:
		}
		if timer != nil {
			timer.Stop()
		}
		q.mu.Lock()
	}
}

// takeLocked moves pieces from the queue into batch: the oldest piece of
// the highest priority waiting first when batch is empty, then every
// compatible one that still fits, higher priorities first, oldest first
// within each (lower priorities only up to their own batch size).
// Pieces whose caller has gone are answered, not taken.
func (q *Queue) takeLocked(batch []*piece) []*piece {
	rows, limit, leadRows := rowsOf(batch), 0, 0
	if len(batch) > 0 {
		limit = q.batchRows(batch[0].req.prio)
	}
	now := q.cfg.Clock()
	for k := High; k >= Low; k-- {
		// running counts the other workers' batches.
		if len(batch) == 0 && q.running >= q.workersFor(k) {
			break
		}
		for e := q.pending[k.idx()].Front(); e != nil; {
			p := e.Value.(*piece)
			e = e.Next()
			if err := p.req.ctx.Err(); err != nil {
				q.unqueue(p)
				q.doneReading(p)
				p.req.complete(p.index, nil, err)
				continue
			}
			if len(batch) > 0 {
				if !q.coalesce || rows >= limit {
					return batch
				}
				// Pieces of one request were cut to run apart.
				if p.shapeKey != batch[0].shapeKey || p.req.lead == batch[0] {
					continue
				}
				// Rows of lower priority join a batch only up to their
				// own limit, and a high-priority one only while they
				// add little to its call.
				if lead := batch[0].req.prio; k < lead {
					if leadRows == 0 {
						leadRows = rows
					}
					if rows+p.rows > q.joinLimit(lead, k, leadRows) {
						break
					}
				}
				if rows+p.rows > limit {
					break
				}
			}
			q.unqueue(p)
			q.ctl.observe(now, p.req.prio, now.Sub(p.queued), q.baseTarget())
			batch = append(batch, p)
			p.req.lead = batch[0]
			rows += p.rows
			if len(batch) == 1 {
				limit = q.batchRows(p.req.prio)
			}
		}
	}
	return batch
}

// fillLocked lets more rows join a batch that is not full, waiting up to
// the batch delay after its oldest piece was queued. Called with q.mu
// held; it releases the lock while waiting.
func (q *Queue) fillLocked(batch []*piece) []*piece {
	limit := q.batchRows(batch[0].req.prio)
	if rowsOf(batch) >= limit {
		return batch
	}
	delay := q.fillDelay(time.Now())
	q.m.fillDelay.Set(delay.Seconds())
	if delay <= 0 {
		return batch
	}
	deadline := batch[0].queued.Add(delay)
	for rowsOf(batch) < limit && !q.closed {
		wait := time.Until(deadline)
		if wait <= 0 {
			break
		}
		q.mu.Unlock()
		timer := time.NewTimer(wait)
		select {
		case <-q.wake:
		case <-timer.C:
		case <-q.stop:
		}
		timer.Stop()
		q.mu.Lock()
		batch = q.takeLocked(batch)
	}
	return batch
}

// fillDelay is the configured delay, or, for auto, a few times the fixed
// cost of a call when rows arrive (or are being decoded) fast enough that
// at least one more is expected meanwhile; called with q.mu held.
func (q *Queue) fillDelay(now time.Time) time.Duration {
	d := q.cfg.MaxBatchDelay
	if !d.Auto {
		return d.Fixed
	}
	wait := min(autoFactor*q.cfg.CallFixedCost, autoCap)
	expected := q.arrivals.rate(now)*wait.Seconds() + float64(q.decoding)
	if wait <= 0 || expected < 1 {
		return 0
	}
	return wait
}

func rowsOf(batch []*piece) int {
	n := 0
	for _, p := range batch {
		n += p.rows
	}
	return n
}

// drainLocked answers every queued piece at shutdown: nothing admitted is
// left without an answer.
func (q *Queue) drainLocked() {
	for k := range q.pending {
		for e := q.pending[k].Front(); e != nil; {
			p := e.Value.(*piece)
			e = e.Next()
			q.unqueue(p)
			q.doneReading(p)
			p.req.complete(p.index, nil, ErrClosed)
		}
	}
	q.observeQueue()
}

// execute runs one batch; the function it returns hands each piece its
// own rows of the outputs (or the batch's error).
func (q *Queue) execute(batch []*piece) (answer func()) {
	start := q.cfg.Clock()
	rows := 0
	for _, p := range batch {
		q.m.queueWait.WithLabelValues(p.req.prio.String()).Observe(start.Sub(p.queued).Seconds())
		rows += p.rows
	}
	q.m.batchRows.Observe(float64(rows))
	span := q.traceBatch(batch, start, rows)
	outs, err := q.run(batch, span)
	end := q.cfg.Clock()
	elapsed := end.Sub(start)
	var traced trace.SpanContext
	if span != nil {
		if err != nil {
			span.SetStatus(codes.Error, err.Error())
		}
		span.End(trace.WithTimestamp(end))
		traced = span.SpanContext()
	}
	for _, p := range batch {
		p.req.ran(start, end, traced)
	}
	q.mu.Lock()
	q.running--
	for _, p := range batch {
		q.doneReading(p)
	}
	q.mu.Unlock()
	if err == nil {
		q.learn(rows, elapsed, outs)
	}
	return func() {
		for i, p := range batch {
			if err != nil {
				p.req.complete(p.index, nil, err)
			} else {
				p.req.complete(p.index, outs[i], nil)
			}
		}
	}
}

// traceBatch starts the span of a call that runs a sampled request's
// rows: a child of the first such request, linked to each of them (a
// request in several pieces of the call, once). Nil when none is sampled.
func (q *Queue) traceBatch(batch []*piece, start time.Time, rows int) trace.Span {
	if q.cfg.Tracer == nil {
		return nil
	}
	var parent context.Context
	var links []trace.Link
	for i, p := range batch {
		sc := trace.SpanContextFromContext(p.req.ctx)
		if !sc.IsSampled() || i > 0 && p.req == batch[i-1].req {
			continue
		}
		if parent == nil {
			parent = p.req.ctx
		}
		links = append(links, trace.Link{SpanContext: sc})
	}
	if parent == nil {
		return nil
	}
	_, span := q.cfg.Tracer.Start(parent, "batch", trace.WithTimestamp(start), trace.WithLinks(links...),
		trace.WithAttributes(attribute.Int("modelserve.batch.rows", rows), attribute.Int("modelserve.batch.pieces", len(batch))))
	return span
}

// run joins a batch's inputs, runs them (traced as span, when set), and
// splits the outputs per piece; a panic on the way fails the batch, not
// the process.
func (q *Queue) run(batch []*piece, span trace.Span) (mine [][]model.Tensor, err error) {
	mine = make([][]model.Tensor, len(batch))
	defer q.cfg.Panics.Catch(panics.Admission, &err)
	inputs, err := joinInputs(batch)
	if err != nil {
		return mine, err
	}
	ctx, release := batchContext(batch)
	defer release()
	if span != nil {
		ctx = trace.ContextWithSpan(ctx, span)
	}
	faults.Inject(batch[0].req.ctx, panics.Admission)
	outs, err := q.runner.Run(ctx, inputs)
	if err != nil {
		return mine, err
	}
	at := 0
	for k, p := range batch {
		mine[k] = make([]model.Tensor, len(outs))
		for i, o := range outs {
			mine[k][i] = o.SliceRows(at, at+p.rows)
		}
		at += p.rows
	}
	return mine, nil
}

// learn updates the cost of a call and the output size per row, which
// the wait prediction, the deadline check and the memory estimate use.
func (q *Queue) learn(rows int, elapsed time.Duration, pieces [][]model.Tensor) {
	var outBytes int64
	for _, outs := range pieces {
		for _, o := range outs {
			outBytes += int64(o.Bytes())
		}
	}
	q.mu.Lock()
	defer q.mu.Unlock()
	if perRow := outBytes / int64(rows); perRow > q.outRowBytes {
		q.outRowBytes = perRow
	}
	q.cost.observe(rows, elapsed)
}

// joinInputs concatenates the pieces' inputs along the batch dimension.
func joinInputs(batch []*piece) ([]model.Tensor, error) {
	if len(batch) == 1 {
		return batch[0].inputs, nil
	}
	joined := make([]model.Tensor, len(batch[0].inputs))
	parts := make([]model.Tensor, len(batch))
	for i := range joined {
		for k, p := range batch {
			parts[k] = p.inputs[i]
		}
		t, err := model.ConcatRows(parts)
		if err != nil {
			return nil, err
		}
		joined[i] = t
	}
	return joined, nil
}

// batchContext ends when every caller in the batch has gone, so a run
// nobody waits for is terminated, and one somebody waits for is not.
func batchContext(batch []*piece) (context.Context, func()) {
	if len(batch) == 1 {
		return batch[0].req.ctx, func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	var left atomic.Int32
	left.Store(int32(len(batch)))
	stops := make([]func() bool, len(batch))
	for i, p := range batch {
		stops[i] = context.AfterFunc(p.req.ctx, func() {
			if left.Add(-1) == 0 {
				cancel()
			}
		})
	}
	return ctx, func() {
		for _, stop := range stops {
			stop()
		}
		cancel()
	}
}
