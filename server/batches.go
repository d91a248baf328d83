package server

import (
	"container/list"
	"context"
	"fmt"
	"hash/maphash"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelserve/modelserve/inferencelog"

	"go.opentelemetry.io/otel/trace"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/panics"
)

// batches remembers the gateway's batches by function, query id and batch
// id: a retry of a batch still running joins it instead of running it
// again, a retry of a finished one gets the same answer, and an async
// batch is polled until done. Finished answers are kept at least ttl,
// within maxBytes, oldest evicted first; their memory stays counted
// against admission's budget through the request's ticket until then.
type batches struct {
	ttl      time.Duration
	maxBytes int64
	seed     maphash.Seed

	mu       sync.Mutex
	entries  map[string]*entry
	finished list.List // of *entry, oldest first
	bytes    int64

	stored  prometheus.GaugeFunc
	size    prometheus.GaugeFunc
	evicted *prometheus.CounterVec
	retries *prometheus.CounterVec
	async   prometheus.Counter

	// running counts the batches finishing in the background, for a
	// drain to wait for.
	running atomic.Int64

	stop chan struct{}
	once sync.Once
}

// entry is one batch, running or finished.
type entry struct {
	key  string
	hash uint64
	rows int
	// async answers pollers; no waiter's departure cancels it.
	async bool
	// failed marks an async answer kept only so a poll learns of the
	// failure; a POST retry runs the batch afresh.
	failed bool
	done   chan struct{}
	// Set before done closes.
	ans answer
	// Under batches.mu.
	waiters  int
	cancel   context.CancelFunc
	ticket   *engine.Ticket
	finishAt time.Time
	elem     *list.Element
}

// answer is a response to give, and to give again to retries.
type answer struct {
	status int
	body   []byte // JSON, uncompressed
	// retryAfter (seconds, 0 for none) and reason go into headers of
	// refusals.
	retryAfter int
	reason     string
	rows       int
	// version is the model version that computed it ("" before one did).
	version string
	// panic is set when the answer is a recovered panic's 500.
	panic *panics.Error
	// message is a failure's message without the gateway's wording
	// around it, for the Open Inference Protocol's answers.
	message string
	// contentType, when set, is the body's (else JSON); headerLen, when
	// set, where a binary answer's JSON header ends.
	contentType string
	headerLen   int
	// stages is where a computed answer's time went (unset for others);
	// received, when its body was read (for its trace).
	stages   stageTimes
	received time.Time
	// log is the request's inference log record, when it is sampled.
	log *inferencelog.Record
}

// stageTimes is where a request's time went: decoding its body, waiting
// in the queue, running (its first call's start to its last call's end)
// and encoding its answer.
type stageTimes struct {
	decode, queue, execute, encode interval
	// batches are the traced calls that ran its rows.
	batches []trace.SpanContext
	set     bool
}

func timed(decode interval, a engine.Stages, encode interval) stageTimes {
	return stageTimes{decode: decode, queue: interval{a.At, a.Queued}, execute: interval{a.At.Add(a.Queued), a.Ran},
		encode: encode, batches: a.Batches, set: true}
}

// storable answers are given again to a retry: successes and the
// caller's mistakes. A refusal or a server failure is not: the retry
// should run afresh.
func (a answer) storable() bool {
	return a.status == http.StatusOK || a.status >= 400 && a.status < 500 && a.status != http.StatusTooManyRequests
}

func newBatches(ttl time.Duration, maxBytes int64, reg prometheus.Registerer) (*batches, error) {
	bs := &batches{ttl: ttl, maxBytes: maxBytes, seed: maphash.MakeSeed(), entries: map[string]*entry{}, stop: make(chan struct{})}
	bs.stored = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "modelserve_batch_results",
		Help: "Gateway batch answers kept for retries and polls.",
	}, func() float64 {
		bs.mu.Lock()
		defer bs.mu.Unlock()
		return float64(bs.finished.Len())
	})
	bs.size = prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "modelserve_batch_results_bytes",
		Help: "Bytes of the gateway batch answers kept (counted in the memory budget).",
	}, func() float64 {
		bs.mu.Lock()
		defer bs.mu.Unlock()
		return float64(bs.bytes)
	})
	bs.evicted = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelserve_batch_results_evicted_total",
		Help: "Kept answers dropped: expired after their time, evicted oldest first for memory, or a failed async batch replaced by its retry.",
	}, []string{"reason"})
	bs.retries = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelserve_batch_retries_total",
		Help: "Retried gateway batches not run again: joined while running, or answered from what was kept.",
	}, []string{"how"})
	bs.async = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "modelserve_async_batches_total",
		Help: "Gateway batches answered 202 and run in the background for polling.",
	})
	for _, c := range []prometheus.Collector{bs.stored, bs.size, bs.evicted, bs.retries, bs.async} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering batch metrics: %w", err)
		}
	}
	for _, r := range []string{"expired", "memory", "replaced"} {
		bs.evicted.WithLabelValues(r)
	}
	for _, h := range []string{"joined", "replayed"} {
		bs.retries.WithLabelValues(h)
	}
	go bs.sweep()
	return bs, nil
}

// key identifies a batch; the function is part of it, since each of a
// model's functions is its own SQL function, and so is the principal that
// sent it: a batch's answer is given, polled or retried, to its sender
// alone.
func batchKey(path, owner string, g gateway) string {
	if g.BatchID == "" {
		return ""
	}
	return path + "\x00" + owner + "\x00" + g.QueryID + "\x00" + g.BatchID
}

func (bs *batches) hash(body []byte) uint64 { return maphash.Bytes(bs.seed, body) }

// forget drops a failed async batch its retry replaces.
func (bs *batches) forget(e *entry) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if bs.entries[e.key] == e && e.elem != nil {
		bs.evictLocked(e, "replaced")
	}
}

// get returns the batch under key, if known and not expired.
func (bs *batches) get(key string) *entry {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	e := bs.entries[key]
	if e != nil && e.elem != nil && time.Since(e.finishAt) > bs.ttl {
		bs.evictLocked(e, "expired")
		return nil
	}
	return e
}

// begin registers a new running batch under key, or returns the one
// already there (fresh false): another attempt got there first.
func (bs *batches) begin(key string, hash uint64, rows int) (e *entry, fresh bool) {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	if e := bs.entries[key]; e != nil {
		return e, false
	}
	e = &entry{key: key, hash: hash, rows: rows, done: make(chan struct{})}
	bs.entries[key] = e
	return e, true
}

// markAsync makes e a batch that runs whether or not anybody waits.
func (bs *batches) markAsync(e *entry) {
	bs.mu.Lock()
	e.async = true
	bs.mu.Unlock()
}

// failedAsync reports an async batch kept only to tell its poll it failed.
func (bs *batches) failedAsync(e *entry) bool {
	select {
	case <-e.done:
	default:
		return false
	}
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return e.failed
}

func (bs *batches) isAsync(e *entry) bool {
	bs.mu.Lock()
	defer bs.mu.Unlock()
	return e.async
}

// wait waits for e's answer as one of its callers. If ctx ends first, the
// caller leaves, and a batch with no caller left that nobody polls is
// cancelled.
func (bs *batches) wait(ctx context.Context, e *entry) (answer, error) {
	bs.mu.Lock()
	e.waiters++
	bs.mu.Unlock()
	defer func() {
		bs.mu.Lock()
		e.waiters--
		if e.waiters == 0 && !e.async && e.cancel != nil {
			e.cancel()
		}
		bs.mu.Unlock()
	}()
	select {
	case <-e.done:
		return e.ans, nil
	case <-ctx.Done():
		return answer{}, ctx.Err()
	}
}

// run finishes a batch in the background: compute waits for what was
// queued under a context that cancel ends, which happens when nobody waits
// any more (unless async) or when the batch is done.
func (bs *batches) run(e *entry, cancel context.CancelFunc, ticket *engine.Ticket, compute func() answer) {
	bs.mu.Lock()
	e.cancel = cancel
	bs.mu.Unlock()
	bs.running.Add(1)
	go func() {
		defer bs.running.Add(-1)
		defer cancel()
		bs.finish(e, compute(), ticket)
	}()
}

// finish gives e its answer: kept, if it is one a retry should get again,
// with the ticket holding its memory until eviction; else forgotten, so a
// retry runs afresh.
func (bs *batches) finish(e *entry, ans answer, ticket *engine.Ticket) {
	bs.mu.Lock()
	e.ans = ans
	close(e.done)
	if !ans.storable() && !e.async {
		delete(bs.entries, e.key)
		bs.mu.Unlock()
		ticket.Done()
		return
	}
	// An async batch that failed stays for its poll, which tells the
	// gateway to send it again.
	e.failed = !ans.storable()
	ticket.Resize(int64(len(ans.body)))
	e.ticket = ticket
	e.finishAt = time.Now()
	e.elem = bs.finished.PushBack(e)
	bs.bytes += int64(len(ans.body))
	// Oldest first; the newest stays even alone over the bound.
	for bs.bytes > bs.maxBytes && bs.finished.Len() > 1 {
		bs.evictLocked(bs.finished.Front().Value.(*entry), "memory")
	}
	bs.mu.Unlock()
}

// evictLocked drops a finished entry; called with bs.mu held.
func (bs *batches) evictLocked(e *entry, reason string) {
	bs.finished.Remove(e.elem)
	e.elem = nil
	delete(bs.entries, e.key)
	bs.bytes -= int64(len(e.ans.body))
	e.ticket.Done()
	bs.evicted.WithLabelValues(reason).Inc()
}

// sweep drops expired answers, so their memory returns even when nobody
// asks for them.
func (bs *batches) sweep() {
	t := time.NewTicker(min(bs.ttl/4, 30*time.Second))
	defer t.Stop()
	for {
		select {
		case <-bs.stop:
			return
		case <-t.C:
		}
		bs.mu.Lock()
		for e := bs.finished.Front(); e != nil; {
			next := e.Next()
			if en := e.Value.(*entry); time.Since(en.finishAt) > bs.ttl {
				bs.evictLocked(en, "expired")
			} else {
				break // the rest are younger
			}
			e = next
		}
		bs.mu.Unlock()
	}
}

func (bs *batches) close() {
	bs.once.Do(func() { close(bs.stop) })
}
