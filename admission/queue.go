package admission

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/model"
)

// Errors that say why a request was not run. ErrOverloaded and ErrTooLarge
// come wrapped in a *Rejection that names the limit.
var (
	// ErrOverloaded: the request does not fit now; retry later (429).
	ErrOverloaded = errors.New("too many requests")
	// ErrTooLarge: the request can never fit, whatever the load (413).
	ErrTooLarge = errors.New("request too large")
	// ErrClosed: the queue is shutting down (503).
	ErrClosed = errors.New("the server is shutting down")
)

// Rejection reasons, as the metrics label them.
const (
	ReasonQueueFull = "queue_full"
	ReasonQueueWait = "queue_wait"
	ReasonFairShare = "fair_share"
	ReasonMemory    = "memory"
	ReasonDeadline  = "deadline"
	ReasonCanceled  = "canceled"
)

// Rejection is a request refused by admission: Err is ErrOverloaded or
// ErrTooLarge, Reason the limit it hit.
type Rejection struct {
	Err    error
	Reason string
	Detail string
	// RetryAfter is when trying again may succeed: the time the queue
	// needs to drain, at least a second.
	RetryAfter time.Duration
}

func (r *Rejection) Error() string { return r.Err.Error() + ": " + r.Detail }
func (r *Rejection) Unwrap() error { return r.Err }

// Runner runs one batch; a workers.Pool is the real one. Size is how many
// batches it runs at once; FixedBatch is the model's fixed batch size, or
// 0 when any batch size goes.
type Runner interface {
	Run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error)
	Size() int
	FixedBatch() int
}

// Limit is a cap on in-flight bytes that may move over time, such as a
// GPU's free memory; the tightest of the budget and every Limit applies.
type Limit interface {
	Bytes() int64
}

// Config bounds the queue and shapes its batches. Zero values take the
// defaults below; Unbounded turns every limit off.
type Config struct {
	// MaxQueueWait bounds the time an admitted request is predicted to
	// wait for a worker, from the cost of the work queued ahead of it as
	// measured on the calls run: the admission that holds for every
	// request size. Zero takes DefaultQueueWait or one full batch at the
	// learned cost, whichever is longer.
	MaxQueueWait time.Duration
	// MaxQueuedRequests is a backstop on the requests waiting;
	// MaxQueuedRows (0: none) and MaxQueuedBytes bound what waits too.
	MaxQueuedRequests int
	MaxQueuedRows     int
	MaxQueuedBytes    int64
	// MemoryBudget bounds the bytes of every request admitted and not yet
	// answered: body, input tensors and the outputs they will produce.
	MemoryBudget int64
	Limits       []Limit
	// MaxBatchRows is the most rows one ONNX Runtime call takes: smaller
	// requests are coalesced up to it, larger ones split across workers.
	MaxBatchRows int
	// MaxBatchDelay is how long a free worker may wait for more rows when
	// its batch is not full; the zero value runs at once with what is
	// queued, AutoDelay waits only while it pays.
	MaxBatchDelay BatchDelay
	// OutputRowBytes estimates the output bytes one row produces, until
	// runs measure it.
	OutputRowBytes int64
	// CallFixedCost is what one ONNX Runtime call costs before its first
	// row (workers.Pool.Cost); AutoDelay waits a few times it.
	CallFixedCost time.Duration
	// CallPerRowCost is what each row adds, for estimates before any run.
	CallPerRowCost time.Duration
	// Unbounded admits everything (for comparison only): nothing is
	// rejected and the queue grows without limit.
	Unbounded bool
	// Panics counts a panic while a batch is joined, run or split; the
	// batch's requests fail with it and the dispatcher goes on.
	Panics *panics.Recorder
	// Clock tells the time; nil is time.Now (tests drive their own).
	Clock func() time.Time
	// Tracer, when set, traces each call that runs a sampled request's
	// rows as a "batch" span linked to every such request in it.
	Tracer trace.Tracer
}

// Defaults.
const (
	// DefaultMaxBatchRows is the most rows a call takes unless set; a
	// model that runs large calls as cheaply a row takes
	// ScalingMaxBatchRows (the engine decides, from warm-up). The wait
	// target cuts both.
	DefaultMaxBatchRows = 64
	ScalingMaxBatchRows = 1024
	// DefaultQueueWait is the least wait target: short enough that an
	// accepted request waits about as long as at full load, long enough
	// for a few batches of a fast model.
	DefaultQueueWait = 50 * time.Millisecond
	DefaultMaxQueued = 1024
)

// Queue admits requests, holds them until a worker is free, and feeds the
// workers batches: one dispatcher per worker takes, as soon as its worker
// is free, the oldest waiting piece and every compatible piece queued
// behind it, up to MaxBatchRows.
type Queue struct {
	runner   Runner
	cfg      Config
	coalesce bool
	m        *metrics

	mu sync.Mutex
	// pending holds, per priority, the pieces waiting, oldest first, and
	// rowsAt their rows.
	pending [priorities]list.List
	rowsAt  [priorities]int
	closed  bool
	// queued counts what waits for a worker; inflight is every admitted
	// request's bytes until its answer is written.
	queuedRequests int
	queuedRows     int
	// tickets counts the tickets admitted and not yet Done.
	tickets int
	// memoryBudget is cfg.MemoryBudget, which SetMemoryBudget may change
	// while budget reads it without the lock.
	memoryBudget atomic.Int64
	queuedBytes  int64
	inflight     int64
	outRowBytes  int64
	// cost is what a call costs, learned from the calls run; ctl scales
	// the wait target down while the measured sojourn runs above it.
	cost costModel
	ctl  controller
	// autoWait: no target was given, so it follows the learned cost of
	// one full batch (DefaultQueueWait at least).
	autoWait bool
	// running counts the batches workers hold: taken (and being filled)
	// or running.
	running int
	// highSeen is when the last high-priority request was queued.
	highSeen time.Time
	// avgRows is the rows of a typical request, a moving average.
	avgRows float64
	// callerRows counts each caller's rows waiting, for the fair share.
	callerRows map[string]int
	// decoding counts tickets admitted whose inputs are still being
	// decoded: rows a moment away, which the auto delay counts on;
	// decodingBytes their bodies' bytes per priority, which bodyRow (the
	// bytes one row of a body weighs, learned at enqueue) turns into the
	// rows they will add, so that a burst of large bodies being read and
	// decoded counts as the work it is before it reaches the queue.
	decoding      int
	decodingBytes [priorities]int64
	bodyRow       float64
	arrivals      arrivals

	wake chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

// request is one admitted request, possibly split into pieces.
type request struct {
	ctx    context.Context
	rows   int
	prio   Priority
	caller string
	pieces []*piece
	// inQueue counts pieces still waiting, under Queue.mu.
	inQueue int
	mu      sync.Mutex
	left    int // pieces not answered yet
	outputs [][]model.Tensor
	err     error
	done    chan struct{}
	// reading counts, under Queue.mu, the pieces whose inputs a call may
	// still read (queued or running); release, if set, runs when it
	// reaches zero.
	reading int
	release func()
	// lead is the first piece of the batch a piece of this request last
	// joined, under Queue.mu.
	lead *piece
	// enqueued is when it was queued; started and finished (under mu)
	// span the calls that ran its pieces: its queue wait and its
	// execution, as Stages reports them.
	enqueued, started, finished time.Time
	// batches are the traced calls that ran its pieces (under mu), at
	// most maxBatchLinks.
	batches []trace.SpanContext
}

// maxBatchLinks bounds the calls a request's trace links to: a request
// split into thousands of pieces names the first ones.
const maxBatchLinks = 64

// ran notes that a call (traced as batch, when valid) ran one of r's
// pieces from start to end.
func (r *request) ran(start, end time.Time, batch trace.SpanContext) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started.IsZero() || start.Before(r.started) {
		r.started = start
	}
	if end.After(r.finished) {
		r.finished = end
	}
	if batch.IsValid() && len(r.batches) < maxBatchLinks {
		r.batches = append(r.batches, batch)
	}
}

// Stages is how long a request waited in the queue before its first
// piece ran, and how long from then until its last piece was done (zero
// for a request none of whose pieces ran); Queued counts from At, and
// Batches are the traced calls that ran it.
type Stages struct {
	Queued, Ran time.Duration
	At          time.Time
	Batches     []trace.SpanContext
}

func (r *request) stages() Stages {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started.IsZero() {
		return Stages{}
	}
	return Stages{Queued: r.started.Sub(r.enqueued), Ran: r.finished.Sub(r.started), At: r.enqueued, Batches: r.batches}
}

// piece is up to a batch (batchRows) of one request's rows.
type piece struct {
	req      *request
	index    int
	inputs   []model.Tensor
	rows     int
	bytes    int64
	shapeKey string
	queued   time.Time
	elem     *list.Element // in pending, nil once taken
}

// New starts a queue in front of r, with one dispatcher per worker.
func New(r Runner, cfg Config, reg prometheus.Registerer) (*Queue, error) {
	if cfg.MaxBatchRows <= 0 {
		cfg.MaxBatchRows = DefaultMaxBatchRows
	}
	if cfg.MaxQueuedRequests <= 0 {
		cfg.MaxQueuedRequests = DefaultMaxQueued
	}
	if cfg.Clock == nil {
		cfg.Clock = time.Now
	}
	cost := costModel{fixed: cfg.CallFixedCost, perRow: cfg.CallPerRowCost}
	autoWait := cfg.MaxQueueWait <= 0
	if autoWait {
		cfg.MaxQueueWait = defaultQueueWait(cost.fixed)
	}
	q := &Queue{
		runner:      r,
		cfg:         cfg,
		coalesce:    r.FixedBatch() == 0,
		outRowBytes: cfg.OutputRowBytes,
		cost:        cost,
		autoWait:    autoWait,
		ctl:         controller{factor: 1, interval: max(100*time.Millisecond, 2*cfg.MaxQueueWait), start: cfg.Clock()},
		callerRows:  map[string]int{},
		wake:        make(chan struct{}, r.Size()),
		stop:        make(chan struct{}),
	}
	q.memoryBudget.Store(cfg.MemoryBudget)
	var err error
	budget := func() int64 {
		b, _ := q.budget()
		return b
	}
	target := func() float64 {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.target().Seconds()
	}
	if q.m, err = newMetrics(reg, budget, target, cfg.CallFixedCost); err != nil {
		return nil, err
	}
	for range r.Size() {
		q.wg.Add(1)
		go q.dispatch()
	}
	return q, nil
}

// defaultQueueWait is DefaultQueueWait, or, for a model whose every call
// costs much (a large fixed part), a call long enough to be worth it
// (efficientCall times that part): the queue must hold at least the next
// batch of every worker, and more only makes callers wait. Batches are
// cut to fit half of it (batchRows), so an accepted request waits up to
// the target and then runs in a call half as long.
func defaultQueueWait(fixed time.Duration) time.Duration {
	return max(DefaultQueueWait, efficientCall*fixed)
}

// fixedCost is the fixed part of a call as measured at warm-up, on a
// quiet machine, when it was: the learned one follows the load, and a
// target that grew with the load would admit more the busier the
// machine. Called with q.mu held.
func (q *Queue) fixedCost() time.Duration {
	if q.cfg.CallFixedCost > 0 {
		return q.cfg.CallFixedCost
	}
	return q.cost.fixed
}

// Config is the configuration in force, defaults filled in.
func (q *Queue) Config() Config {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := q.cfg
	c.MemoryBudget = q.memoryBudget.Load()
	return c
}

// SetMemoryBudget sets the bytes admitted requests may hold from now on,
// and, when it was not given, the bytes that may wait (half of it): the
// share of a process's budget that several queues split. What is in
// flight already is not refused.
func (q *Queue) SetMemoryBudget(b int64, queuedBytes int64) {
	q.mu.Lock()
	defer q.mu.Unlock()
	q.memoryBudget.Store(b)
	q.cfg.MaxQueuedBytes = queuedBytes
}

// Ticket is one request's claim on the queue and the memory budget, from
// before its body is parsed until its answer is written.
type Ticket struct {
	q        *Queue
	bytes    int64
	body     int64 // the bytes it arrived with, counted in decodingBytes
	prio     Priority
	caller   string
	decoding bool
	done     bool
	// last is the request it queued last, for Stages.
	last *request
}

// Stages reports where the time of the request the ticket queued last
// went (Run, RunBorrowed or Enqueue, once it is answered).
func (t *Ticket) Stages() Stages {
	if t.last == nil {
		return Stages{}
	}
	return t.last.stages()
}

// Admit claims room for a request whose body is bodyBytes long, at
// normal priority: AdmitArrival with nothing else known.
func (q *Queue) Admit(bodyBytes int64) (*Ticket, error) {
	return q.AdmitArrival(Arrival{Bytes: bodyBytes, Priority: Normal})
}

// AdmitArrival claims room for a request before its body is parsed: one
// that cannot fit is refused without spending the work. It is refused
// when the work queued ahead of it (at its priority or higher) is
// predicted to take longer than the wait target allows for its priority,
// when the queue is crowded and its caller already holds more than a fair
// share of it, or when its body does not fit the memory budget. Call Done
// when its answer has been written.
func (q *Queue) AdmitArrival(a Arrival) (*Ticket, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, ErrClosed
	}
	if !q.cfg.Unbounded {
		// What the body will decode to is not known yet, but a queue with
		// no room for one more request or one more row refuses anything.
		if err := q.checkQueue(a.Priority, 1, 1); err != nil {
			return nil, err
		}
		if err := q.checkWait(a.Priority, a.Caller, true); err != nil {
			return nil, err
		}
		if err := q.checkMemory(a.Priority, a.Bytes, "its body"); err != nil {
			return nil, err
		}
	}
	q.inflight += a.Bytes
	q.tickets++
	q.decoding++
	q.decodingBytes[a.Priority.idx()] += a.Bytes
	q.m.inflight.Set(float64(q.inflight))
	return &Ticket{q: q, bytes: a.Bytes, body: a.Bytes, prio: a.Priority, caller: a.Caller, decoding: true}, nil
}

// decodingRows estimates the rows that requests of priority p or above,
// admitted and still being read or decoded, will add to the queue: none
// until a body has been decoded and the weight of a row is known. Called
// with q.mu held.
func (q *Queue) decodingRows(p Priority) int {
	if q.bodyRow <= 0 {
		return 0
	}
	var b int64
	for k := p; k <= High; k++ {
		b += q.decodingBytes[k.idx()]
	}
	return int(float64(b) / q.bodyRow)
}

// avgRowsDecay is how much each request weighs in avgRows.
const avgRowsDecay = 0.05

// bodyRowDecay is how much each decoded body weighs in bodyRow.
const bodyRowDecay = 0.1

// learnBody takes a decoded body's bytes per row into bodyRow. Called
// with q.mu held.
func (q *Queue) learnBody(bytes int64, rows int) {
	if bytes <= 0 || rows <= 0 {
		return
	}
	v := float64(bytes) / float64(rows)
	if q.bodyRow <= 0 {
		q.bodyRow = v
		return
	}
	q.bodyRow += bodyRowDecay * (v - q.bodyRow)
}

// waitAhead predicts how long a request of priority p would wait for a
// worker now: the work queued at p or above (with arriving, the rows of
// the requests still being decoded too: they reach the queue first),
// spread over the workers, and, when every worker is busy, half a call
// more. Called with q.mu held.
func (q *Queue) waitAhead(p Priority, arriving bool) time.Duration {
	rows := 0
	for k := p; k <= High; k++ {
		rows += q.rowsAt[k.idx()]
	}
	if arriving {
		rows += q.decodingRows(p)
	}
	workers := q.workersFor(p)
	batch := q.batchRows(p)
	w := q.cost.work(rows, batch) / time.Duration(workers)
	if q.running >= workers {
		w += q.cost.call(batch) / 2
	}
	return w
}

// target is the wait admission allows now: the configured target, scaled
// down while the measured sojourn runs above it. Called with q.mu held.
func (q *Queue) target() time.Duration {
	now := q.cfg.Clock()
	q.ctl.idle(now, q.queuedRows == 0)
	return time.Duration(float64(q.baseTarget()) * q.ctl.factor)
}

// baseTarget is the wait target before self-correction. Called with
// q.mu held.
func (q *Queue) baseTarget() time.Duration {
	if q.autoWait {
		// Room, beyond the calls running, for one more typical request
		// on every worker: without it, callers whose requests are each
		// a few batches of a slow model could never keep the workers
		// busy, every request with one ahead of it being refused. In
		// batches that fit the least target (for 1-row requests the
		// room is then within it), at the learned cost, as the wait
		// itself is predicted.
		floor := defaultQueueWait(q.fixedCost())
		batch := q.rowsFitting(floor)
		room := q.cost.call(batch)/2 + q.cost.work(int(q.avgRows+0.5), batch)
		return max(floor, room)
	}
	return q.cfg.MaxQueueWait
}

// checkWait refuses a request whose predicted wait passes what its
// priority allows. In a crowded queue (past half that) shared by several
// callers, a caller holding more than a fair share of the rows waiting is
// refused first, and one holding less is still let in up to twice the
// limit: a large scan cannot lock interactive callers out. A request with
// nothing ahead is always let in: a large one then runs alone. arriving:
// the request's body is not read yet, and requests still being decoded
// are ahead of it. Called with q.mu held.
func (q *Queue) checkWait(p Priority, caller string, arriving bool) error {
	if q.queuedRows == 0 && (!arriving || q.decodingRows(Low) == 0) {
		return nil
	}
	target := q.target()
	wait := q.waitAhead(p, arriving)
	q.m.predicted.Observe(wait.Seconds())
	limit := time.Duration(float64(target) * p.shedAt())
	held, fair := q.callerRows[caller], 0
	shared := len(q.callerRows) > 1 || len(q.callerRows) == 1 && held == 0
	if shared {
		callers := len(q.callerRows)
		if held == 0 {
			callers++
		}
		fair = q.queuedRows / callers
	}
	switch {
	case shared && 2*wait > limit && held > fair:
		return q.reject(p, ErrOverloaded, ReasonFairShare, "the queue is crowded and this caller holds %d of its %d rows; callers with less go first",
			held, q.queuedRows)
	case wait > 2*limit, wait > limit && !(shared && held < fair):
		return q.reject(p, ErrOverloaded, ReasonQueueWait, "about %v of work waits ahead; at %s priority the queue takes %v",
			wait.Round(time.Microsecond), p, limit.Round(time.Microsecond))
	}
	return nil
}

// drainTime is how long the whole queue needs, with what is being
// decoded, for Retry-After.
func (q *Queue) drainTime() time.Duration {
	batch := q.batchRows(Normal)
	return q.cost.work(q.queuedRows+q.decodingRows(Low), batch)/time.Duration(q.runner.Size()) + q.cost.call(batch)
}

// checkMemory refuses n more in-flight bytes that do not fit the budget.
// Called with q.mu held.
func (q *Queue) checkMemory(p Priority, n int64, what string) error {
	budget, exhausted := q.budget()
	if exhausted {
		// A device with no room now (a GPU gone or full): later, perhaps.
		return q.reject(p, ErrOverloaded, ReasonMemory, "no device has memory for more work now")
	}
	if budget <= 0 {
		return nil
	}
	if n > budget {
		return q.reject(p, ErrTooLarge, ReasonMemory, "%s needs %d bytes, more than the whole memory budget of %d bytes; send fewer rows", what, n, budget)
	}
	if q.inflight+n > budget {
		return q.reject(p, ErrOverloaded, ReasonMemory, "%d of %d budgeted bytes are in flight", q.inflight, budget)
	}
	return nil
}

// budget is the tightest of the configured budget and the Limits; 0 means
// none. exhausted: a Limit has no room at all now. It reads only what does
// not change or what Limits keep, so it needs no lock of its own.
func (q *Queue) budget() (b int64, exhausted bool) {
	if q.cfg.Unbounded {
		return 0, false
	}
	b = q.memoryBudget.Load()
	for _, l := range q.cfg.Limits {
		v := l.Bytes()
		if v <= 0 {
			return 0, true
		}
		if b <= 0 || v < b {
			b = v
		}
	}
	return b, false
}

// reject refuses a request of priority p, with the time the queue
// needs to drain as when to retry. Called with q.mu held.
func (q *Queue) reject(p Priority, err error, reason, format string, args ...any) error {
	q.m.rejected.WithLabelValues(reason, p.String()).Inc()
	return &Rejection{Err: err, Reason: reason, Detail: fmt.Sprintf(format, args...), RetryAfter: max(time.Second, q.drainTime())}
}

// Run queues the decoded inputs and waits for their outputs, in the rows'
// order: Enqueue, then Wait.
func (t *Ticket) Run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	p, err := t.Enqueue(ctx, inputs)
	if err != nil {
		return nil, err
	}
	return p.Wait()
}

// RunBorrowed is Run for inputs whose memory the caller lends (a pooled
// request body the tensors point into): release runs once no call will
// read them again, at once if they are refused, else when every piece has
// run or left the queue, which may be after RunBorrowed returns (a caller
// that gave up while its rows ran). It runs with the queue's lock held:
// it must only hand the memory back, never block or call the queue.
func (t *Ticket) RunBorrowed(ctx context.Context, inputs []model.Tensor, release func()) ([]model.Tensor, error) {
	req, err := t.q.enqueue(ctx, t, inputs, release)
	if err != nil {
		release()
		return nil, err
	}
	return (&Pending{q: t.q, req: req}).Wait()
}

// Pending is a request in the queue, its outputs still to come.
type Pending struct {
	q   *Queue
	req *request
}

// Enqueue admits the decoded inputs into the queue, or refuses them at
// once. ctx is the request's: when it ends, its queued pieces are dropped
// and never run.
func (t *Ticket) Enqueue(ctx context.Context, inputs []model.Tensor) (*Pending, error) {
	req, err := t.q.enqueue(ctx, t, inputs, nil)
	if err != nil {
		return nil, err
	}
	return &Pending{q: t.q, req: req}, nil
}

// Stages reports where the request's time went, once it is answered.
func (p *Pending) Stages() Stages { return p.req.stages() }

// Wait returns the outputs in the rows' order, or ctx's error when the
// request's context ends first.
func (p *Pending) Wait() ([]model.Tensor, error) {
	q, req, ctx := p.q, p.req, p.req.ctx
	select {
	case <-req.done:
	case <-ctx.Done():
	}
	select {
	case <-req.done:
		if req.err == nil {
			return req.result() // even if ctx ended the same instant
		}
	default:
	}
	// A failed piece fails the request, and a caller that gave up wants
	// nothing: what is still queued need not run.
	q.drop(req)
	if err := ctx.Err(); err != nil {
		q.m.rejected.WithLabelValues(reasonOf(err), req.prio.String()).Inc()
		return nil, err
	}
	return nil, req.err
}

// Grow claims n more bytes for the ticket (a body that decompressed to
// more than it weighed on the wire), refused like any other.
func (t *Ticket) Grow(n int64) error {
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if !q.cfg.Unbounded {
		if err := q.checkMemory(t.prio, n, "the decompressed body"); err != nil {
			return err
		}
	}
	t.bytes += n
	q.inflight += n
	q.m.inflight.Set(float64(q.inflight))
	return nil
}

// Resize sets what the ticket holds to n bytes, unchecked: a stored
// answer keeps its memory counted against the budget until it is evicted.
func (t *Ticket) Resize(n int64) {
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if t.done {
		return
	}
	q.inflight += n - t.bytes
	t.bytes = n
	q.m.inflight.Set(float64(q.inflight))
}

// Estimate is about how long a request of rows rows would take from now:
// what is queued, then its own rows, at the cost the calls run measure.
func (q *Queue) Estimate(rows int) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cost.work(q.queuedRows+rows, q.batchRows(Normal)) / time.Duration(q.runner.Size())
}

// Cost is what a call costs as the queue has learned it: a fixed part and
// a part per row.
func (q *Queue) Cost() (fixed, perRow time.Duration) {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.cost.fixed, q.cost.perRow
}

// Outstanding counts the tickets admitted and not yet Done: requests a
// drain waits for.
func (q *Queue) Outstanding() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.tickets
}

// Done releases the ticket's memory; call it once the answer is written.
func (t *Ticket) Done() {
	q := t.q
	q.mu.Lock()
	defer q.mu.Unlock()
	if t.done {
		return
	}
	t.done = true
	q.tickets--
	q.settle(t)
	q.inflight -= t.bytes
	q.m.inflight.Set(float64(q.inflight))
}

func (q *Queue) enqueue(ctx context.Context, t *Ticket, inputs []model.Tensor, release func()) (*request, error) {
	rows := inputs[0].Rows()
	var inBytes int64
	for _, in := range inputs {
		inBytes += int64(in.Bytes())
	}
	key := shapeKey(inputs)

	q.mu.Lock()
	defer q.mu.Unlock()
	if t.decoding {
		q.learnBody(t.body, rows)
	}
	q.settle(t)
	if q.closed {
		return nil, ErrClosed
	}
	need := inBytes + int64(rows)*q.outRowBytes
	if !q.cfg.Unbounded {
		if err := q.checkQueue(t.prio, rows, inBytes); err != nil {
			return nil, err
		}
		// Again, now that it is decoded: the queue may have grown meanwhile.
		if err := q.checkWait(t.prio, t.caller, false); err != nil {
			return nil, err
		}
		if err := q.checkMemory(t.prio, need, "the request"); err != nil {
			return nil, err
		}
		if err := q.checkDeadline(ctx, t.prio, rows); err != nil {
			return nil, err
		}
	}
	t.bytes += need
	q.inflight += need

	now := q.cfg.Clock()
	req := &request{ctx: ctx, rows: rows, prio: t.prio, caller: t.caller, done: make(chan struct{}), release: release, enqueued: now}
	t.last = req
	q.arrivals.observe(now, rows)
	if q.avgRows == 0 {
		q.avgRows = float64(rows)
	} else {
		q.avgRows += avgRowsDecay * (float64(rows) - q.avgRows)
	}
	if t.prio == High {
		q.highSeen = now
	}
	// Pieces of even size, each at most a batch; a request of fewer
	// batches than there are workers is still spread over them, in
	// pieces each worth a call, so that idle workers share it.
	batch := q.batchRows(t.prio)
	n := max(1, (rows+batch-1)/batch)
	if workers := q.runner.Size(); n < workers && q.coalesce && q.fixedCost() > 0 {
		n = max(n, min(workers, rows/q.rowsFitting(efficientCall*q.fixedCost())))
	}
	size := (rows + n - 1) / n
	for lo := 0; lo < rows; lo += size {
		hi := min(lo+size, rows)
		p := &piece{req: req, index: len(req.pieces), rows: hi - lo, shapeKey: key, queued: now}
		p.inputs = make([]model.Tensor, len(inputs))
		for i, in := range inputs {
			p.inputs[i] = in.SliceRows(lo, hi)
		}
		p.bytes = inBytes * int64(p.rows) / int64(rows)
		p.elem = q.pending[req.prio.idx()].PushBack(p)
		req.pieces = append(req.pieces, p)
		q.rowsAt[req.prio.idx()] += p.rows
		q.queuedRows += p.rows
		q.queuedBytes += p.bytes
		q.callerRows[req.caller] += p.rows
	}
	req.left = len(req.pieces)
	req.inQueue = len(req.pieces)
	req.reading = len(req.pieces)
	req.outputs = make([][]model.Tensor, len(req.pieces))
	q.queuedRequests++
	q.observeQueue()
	for range req.pieces {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return req, nil
}

// settle marks that t's inputs are no longer being decoded; called with
// q.mu held.
func (q *Queue) settle(t *Ticket) {
	if !t.decoding {
		return
	}
	t.decoding = false
	q.decoding--
	q.decodingBytes[t.prio.idx()] -= t.body
}

// checkQueue refuses rows and bytes that would overfill the queue; called
// with q.mu held.
//
// A request larger than the whole queue is admitted when the queue is
// empty: it then runs alone, split across the workers. Only memory can
// make a request too large for good.
func (q *Queue) checkQueue(p Priority, rows int, bytes int64) error {
	switch {
	case q.queuedRequests >= q.cfg.MaxQueuedRequests:
		return q.reject(p, ErrOverloaded, ReasonQueueFull, "%d requests are waiting", q.queuedRequests)
	case q.queuedRows == 0:
		return nil
	case q.cfg.MaxQueuedRows > 0 && q.queuedRows+rows > q.cfg.MaxQueuedRows:
		return q.reject(p, ErrOverloaded, ReasonQueueFull, "%d rows are waiting", q.queuedRows)
	case q.cfg.MaxQueuedBytes > 0 && q.queuedBytes+bytes > q.cfg.MaxQueuedBytes:
		return q.reject(p, ErrOverloaded, ReasonQueueFull, "%d input bytes are waiting", q.queuedBytes)
	}
	return nil
}

// checkDeadline refuses at once a request that, at the measured speed,
// would still be waiting when its deadline passes. Called with q.mu held.
func (q *Queue) checkDeadline(ctx context.Context, p Priority, rows int) error {
	deadline, ok := ctx.Deadline()
	if !ok || q.cost.perRow <= 0 && q.cost.fixed <= 0 {
		return nil
	}
	wait := q.cost.work(q.queuedRows+rows, q.batchRows(p)) / time.Duration(q.workersFor(p))
	if left := deadline.Sub(q.cfg.Clock()); wait > left {
		return q.reject(p, ErrOverloaded, ReasonDeadline, "the queue needs about %v, the request's deadline is in %v", wait.Round(time.Millisecond), left.Round(time.Millisecond))
	}
	return nil
}

// drop takes what is still queued of a request out of the queue.
func (q *Queue) drop(req *request) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, p := range req.pieces {
		if p.elem != nil {
			q.unqueue(p)
			q.doneReading(p)
		}
	}
	q.observeQueue()
}

// doneReading notes that no call will read p's inputs again, and hands
// the request's borrowed memory back after its last piece. Called with
// q.mu held.
func (q *Queue) doneReading(p *piece) {
	r := p.req
	if r.reading--; r.reading == 0 && r.release != nil {
		r.release()
	}
}

// unqueue takes p out of pending; called with q.mu held.
func (q *Queue) unqueue(p *piece) {
	q.pending[p.req.prio.idx()].Remove(p.elem)
	q.rowsAt[p.req.prio.idx()] -= p.rows
	p.elem = nil
	q.queuedRows -= p.rows
	q.queuedBytes -= p.bytes
	if q.callerRows[p.req.caller] -= p.rows; q.callerRows[p.req.caller] <= 0 {
		delete(q.callerRows, p.req.caller)
	}
	if p.req.inQueue--; p.req.inQueue == 0 {
		q.queuedRequests--
	}
}

func reasonOf(err error) string {
	if errors.Is(err, context.DeadlineExceeded) {
		return ReasonDeadline
	}
	return ReasonCanceled
}

func (q *Queue) observeQueue() {
	q.m.queuedRequests.Set(float64(q.queuedRequests))
	q.m.queuedRows.Set(float64(q.queuedRows))
	q.m.inflight.Set(float64(q.inflight))
}

// shapeKey tells apart requests whose rows cannot share a tensor: those
// whose open dimensions (a sequence length) differ.
func shapeKey(inputs []model.Tensor) string {
	var b []byte
	for _, in := range inputs {
		for _, d := range in.Shape[1:] {
			b = fmt.Appendf(b, "%d,", d)
		}
		b = append(b, ';')
	}
	return string(b)
}

func (r *request) complete(index int, outputs []model.Tensor, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.left == 0 {
		return
	}
	if err != nil && r.err == nil {
		r.err = err
	}
	r.outputs[index] = outputs
	r.left--
	if r.left == 0 || r.err != nil {
		r.left = 0
		close(r.done)
	}
}

// result joins the pieces' outputs back in row order.
func (r *request) result() ([]model.Tensor, error) {
	if len(r.outputs) == 1 {
		return r.outputs[0], nil
	}
	joined := make([]model.Tensor, len(r.outputs[0]))
	parts := make([]model.Tensor, len(r.outputs))
	for i := range joined {
		for k, outs := range r.outputs {
			parts[k] = outs[i]
		}
		t, err := model.ConcatRows(parts)
		if err != nil {
			return nil, fmt.Errorf("joining the pieces of a split request: %w", err)
		}
		joined[i] = t
	}
	return joined, nil
}

// Close stops admitting, answers what is still queued with ErrClosed and
// waits for running batches to finish.
func (q *Queue) Close() {
	q.mu.Lock()
	if !q.closed {
		q.closed = true
		close(q.stop)
	}
	q.mu.Unlock()
	q.wg.Wait()
}
