package admission

import (
	"container/list"
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

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
	// MaxQueuedRequests, MaxQueuedRows and MaxQueuedBytes bound what waits
	// for a worker.
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
}

// Defaults.
const (
	DefaultMaxBatchRows = 64
	// DefaultQueueWait is about how much work, in time, the queue holds by
	// default: enough for large gateway batches of a fast model to wait
	// their turn, short enough that waiting stays short.
	DefaultQueueWait = 100 * time.Millisecond
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

	mu      sync.Mutex
	pending list.List // of *piece, oldest first
	closed  bool
	// queued counts what waits for a worker; inflight is every admitted
	// request's bytes until its answer is written.
	queuedRequests int
	queuedRows     int
	queuedBytes    int64
	inflight       int64
	outRowBytes    int64
	// rowsPerSecond is the measured throughput of one worker, for the
	// deadline-aware check; 0 until the first run.
	rowsPerSecond float64
	// decoding counts tickets admitted whose inputs are still being
	// decoded: rows a moment away, which the auto delay counts on.
	decoding int
	arrivals arrivals

	wake chan struct{}
	stop chan struct{}
	wg   sync.WaitGroup
}

// request is one admitted request, possibly split into pieces.
type request struct {
	ctx    context.Context
	rows   int
	pieces []*piece
	// inQueue counts pieces still waiting, under Queue.mu.
	inQueue int
	mu      sync.Mutex
	left    int // pieces not answered yet
	outputs [][]model.Tensor
	err     error
	done    chan struct{}
}

// piece is up to MaxBatchRows rows of one request.
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
	if cfg.MaxQueuedRows <= 0 {
		cfg.MaxQueuedRows = defaultQueuedRows(cfg, r.Size())
	}
	q := &Queue{
		runner:      r,
		cfg:         cfg,
		coalesce:    r.FixedBatch() == 0,
		outRowBytes: cfg.OutputRowBytes,
		wake:        make(chan struct{}, r.Size()),
		stop:        make(chan struct{}),
	}
	var err error
	budget := func() int64 {
		b, _ := q.budget()
		return b
	}
	if q.m, err = newMetrics(reg, budget, cfg.CallFixedCost); err != nil {
		return nil, err
	}
	for range r.Size() {
		q.wg.Add(1)
		go q.dispatch()
	}
	return q, nil
}

// defaultQueuedRows sizes the queue to about DefaultQueueWait of work at
// the measured cost per call, and at least one full batch per worker:
// that keeps every worker busy (it takes the next the moment it is free),
// and more would only make callers wait longer.
func defaultQueuedRows(cfg Config, workers int) int {
	batch := max(cfg.MaxBatchRows, DefaultMaxBatchRows) // batching off must not shrink it
	perRow := cfg.CallPerRowCost + cfg.CallFixedCost/time.Duration(max(cfg.MaxBatchRows, 1))
	rows := batch
	if perRow > 0 {
		rows = max(rows, int(DefaultQueueWait/perRow))
	}
	return workers * rows
}

// Config is the configuration in force, defaults filled in.
func (q *Queue) Config() Config { return q.cfg }

// Ticket is one request's claim on the queue and the memory budget, from
// before its body is parsed until its answer is written.
type Ticket struct {
	q        *Queue
	bytes    int64
	decoding bool
	done     bool
}

// Admit claims room for a request whose body is bodyBytes long, before the
// body is parsed: a request that cannot fit is refused without spending
// the work. Call Done when its answer has been written.
func (q *Queue) Admit(bodyBytes int64) (*Ticket, error) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		return nil, ErrClosed
	}
	if !q.cfg.Unbounded {
		// What the body will decode to is not known yet, but a queue with
		// no room for one more request or one more row refuses anything.
		if err := q.checkQueue(1, 1); err != nil {
			return nil, err
		}
		if err := q.checkMemory(bodyBytes, "its body"); err != nil {
			return nil, err
		}
	}
	q.inflight += bodyBytes
	q.decoding++
	q.m.inflight.Set(float64(q.inflight))
	return &Ticket{q: q, bytes: bodyBytes, decoding: true}, nil
}

// checkMemory refuses n more in-flight bytes that do not fit the budget.
// Called with q.mu held.
func (q *Queue) checkMemory(n int64, what string) error {
	budget, exhausted := q.budget()
	if exhausted {
		// A device with no room now (a GPU gone or full): later, perhaps.
		return q.reject(ErrOverloaded, ReasonMemory, "no device has memory for more work now")
	}
	if budget <= 0 {
		return nil
	}
	if n > budget {
		return q.reject(ErrTooLarge, ReasonMemory, "%s needs %d bytes, more than the whole memory budget of %d bytes; send fewer rows", what, n, budget)
	}
	if q.inflight+n > budget {
		return q.reject(ErrOverloaded, ReasonMemory, "%d of %d budgeted bytes are in flight", q.inflight, budget)
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
	b = q.cfg.MemoryBudget
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

func (q *Queue) reject(err error, reason, format string, args ...any) error {
	q.m.rejected.WithLabelValues(reason).Inc()
	return &Rejection{Err: err, Reason: reason, Detail: fmt.Sprintf(format, args...)}
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

// Pending is a request in the queue, its outputs still to come.
type Pending struct {
	q   *Queue
	req *request
}

// Enqueue admits the decoded inputs into the queue, or refuses them at
// once. ctx is the request's: when it ends, its queued pieces are dropped
// and never run.
func (t *Ticket) Enqueue(ctx context.Context, inputs []model.Tensor) (*Pending, error) {
	req, err := t.q.enqueue(ctx, t, inputs)
	if err != nil {
		return nil, err
	}
	return &Pending{q: t.q, req: req}, nil
}

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
		q.m.rejected.WithLabelValues(reasonOf(err)).Inc()
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
		if err := q.checkMemory(n, "the decompressed body"); err != nil {
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
// what is queued, then its own rows, at the measured speed (or, before
// any run, the speed warm-up measured).
func (q *Queue) Estimate(rows int) time.Duration {
	q.mu.Lock()
	defer q.mu.Unlock()
	workers := float64(q.runner.Size())
	if q.rowsPerSecond > 0 {
		return time.Duration(float64(q.queuedRows+rows) / (q.rowsPerSecond * workers) * float64(time.Second))
	}
	perRow := q.cfg.CallPerRowCost
	return time.Duration(float64(q.queuedRows+rows)*float64(perRow)/workers) + q.cfg.CallFixedCost
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
	q.settle(t)
	q.inflight -= t.bytes
	q.m.inflight.Set(float64(q.inflight))
}

func (q *Queue) enqueue(ctx context.Context, t *Ticket, inputs []model.Tensor) (*request, error) {
	rows := inputs[0].Rows()
	var inBytes int64
	for _, in := range inputs {
		inBytes += int64(in.Bytes())
	}
	key := shapeKey(inputs)

	q.mu.Lock()
	defer q.mu.Unlock()
	q.settle(t)
	if q.closed {
		return nil, ErrClosed
	}
	need := inBytes + int64(rows)*q.outRowBytes
	if !q.cfg.Unbounded {
		if err := q.checkQueue(rows, inBytes); err != nil {
			return nil, err
		}
		if err := q.checkMemory(need, "the request"); err != nil {
			return nil, err
		}
		if err := q.checkDeadline(ctx, rows); err != nil {
			return nil, err
		}
	}
	t.bytes += need
	q.inflight += need

	req := &request{ctx: ctx, rows: rows, done: make(chan struct{})}
	now := time.Now()
	q.arrivals.observe(now, rows)
	for lo := 0; lo < rows; lo += q.cfg.MaxBatchRows {
		hi := min(lo+q.cfg.MaxBatchRows, rows)
		p := &piece{req: req, index: len(req.pieces), rows: hi - lo, shapeKey: key, queued: now}
		p.inputs = make([]model.Tensor, len(inputs))
		for i, in := range inputs {
			p.inputs[i] = in.SliceRows(lo, hi)
		}
		p.bytes = inBytes * int64(p.rows) / int64(rows)
		p.elem = q.pending.PushBack(p)
		req.pieces = append(req.pieces, p)
		q.queuedRows += p.rows
		q.queuedBytes += p.bytes
	}
	req.left = len(req.pieces)
	req.inQueue = len(req.pieces)
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
}

// checkQueue refuses rows and bytes that would overfill the queue; called
// with q.mu held.
//
// A request larger than the whole queue is admitted when the queue is
// empty: it then runs alone, split across the workers. Only memory can
// make a request too large for good.
func (q *Queue) checkQueue(rows int, bytes int64) error {
	switch {
	case q.queuedRequests >= q.cfg.MaxQueuedRequests:
		return q.reject(ErrOverloaded, ReasonQueueFull, "%d requests are waiting", q.queuedRequests)
	case q.pending.Len() == 0:
		return nil
	case q.queuedRows+rows > q.cfg.MaxQueuedRows:
		return q.reject(ErrOverloaded, ReasonQueueFull, "%d rows are waiting", q.queuedRows)
	case q.cfg.MaxQueuedBytes > 0 && q.queuedBytes+bytes > q.cfg.MaxQueuedBytes:
		return q.reject(ErrOverloaded, ReasonQueueFull, "%d input bytes are waiting", q.queuedBytes)
	}
	return nil
}

// checkDeadline refuses at once a request that, at the measured speed,
// would still be waiting when its deadline passes. Called with q.mu held.
func (q *Queue) checkDeadline(ctx context.Context, rows int) error {
	deadline, ok := ctx.Deadline()
	if !ok || q.rowsPerSecond <= 0 {
		return nil
	}
	rate := q.rowsPerSecond * float64(q.runner.Size())
	wait := time.Duration(float64(q.queuedRows+rows) / rate * float64(time.Second))
	if left := time.Until(deadline); wait > left {
		return q.reject(ErrOverloaded, ReasonDeadline, "the queue needs about %v, the request's deadline is in %v", wait.Round(time.Millisecond), left.Round(time.Millisecond))
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
		}
	}
	q.observeQueue()
}

// unqueue takes p out of pending; called with q.mu held.
func (q *Queue) unqueue(p *piece) {
	q.pending.Remove(p.elem)
	p.elem = nil
	q.queuedRows -= p.rows
	q.queuedBytes -= p.bytes
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
