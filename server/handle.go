package server

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gofiber/fiber/v2"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/faults"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/model"
)

// predict answers POST on a function's route: a batch of rows in, the
// function's outputs per row out. A gateway batch (one with a batch id)
// goes through the batch store, so its retries are answered once.
func (s *Server) predict(c *fiber.Ctx, r *route) error {
	s.active.Add(1)
	defer s.active.Add(-1)
	start := time.Now()
	g := readGateway(&c.Request().Header)
	s.traceRequest(c, r, start)
	ans, how := s.handle(c, r, g, start)
	s.respond(c, r, g, ans, how, start)
	return nil
}

// guard runs before every route: a panic that escaped everything else
// (one while answering, in a probe, in /metrics) answers 500 and the
// server goes on.
func (s *Server) guard(c *fiber.Ctx) (err error) {
	defer s.finishBody(c) // last, once the answer is decided
	defer func() {
		if v := recover(); v != nil {
			p := s.cfg.Panics.Recovered(panics.Handler, v)
			c.Response().Reset()
			s.writePanic(c, p)
			err = nil
		}
	}()
	return c.Next()
}

// poll answers GET on a function's route with a batch id: an async batch
// is 202 while it runs, then its answer.
func (s *Server) poll(c *fiber.Ctx, r *route) error {
	start := time.Now()
	g := readGateway(&c.Request().Header)
	s.traceRequest(c, r, start)
	key := batchKey(r.key, principal(c), g)
	if key == "" {
		c.Set(fiber.HeaderAllow, fiber.MethodPost)
		s.respond(c, r, g, s.failure(inputErr(-1, "", "%s takes POST; GET polls an async batch and needs the sf-external-function-query-batch-id header", r.fn.Path()), http.StatusMethodNotAllowed), "", start)
		return nil
	}
	e := s.batches.get(key)
	if e == nil {
		s.respond(c, r, g, answer{status: http.StatusNotFound, body: errorBody(fmt.Sprintf("no batch %q of query %q: it was never sent here, or its answer expired", g.BatchID, g.QueryID))}, "polled", start)
		return nil
	}
	select {
	case <-e.done:
		s.respond(c, r, g, e.ans, "polled", start)
		if s.batches.failedAsync(e) {
			s.batches.forget(e) // told once; the retry runs afresh
		}
	default:
		s.respond(c, r, g, running, "polled", start)
	}
	return nil
}

// running is the answer to an async batch still at work.
var running = answer{status: http.StatusAccepted, body: []byte(`{"status":"running"}`)}

// handle turns a request into its answer; how says how a gateway batch was
// answered (computed, async, joined, replayed). A panic fails this request
// alone: the admission ticket it held is given back, and a gateway batch
// it had begun is finished with the failure, so its retries run afresh.
func (s *Server) handle(c *fiber.Ctx, r *route, g gateway, start time.Time) (ans answer, how string) {
	var ticket *engine.Ticket // held here until handed to a batch
	var begun *entry          // a batch begun here and not yet handed off
	// rec, when the request is sampled for the inference log, goes with
	// the answer; a gateway batch's computation logs its own when it ends.
	rec := s.startRecord(r)
	defer func() { ans.log = rec }()
	defer func() {
		v := recover()
		if v == nil {
			return
		}
		ans, how = s.failure(s.cfg.Panics.Recovered(panics.Handler, v), 0), ""
		switch {
		case begun != nil:
			s.batches.finish(begun, ans, ticket)
		case ticket != nil:
			ticket.Done()
		}
	}()
	// Counted in active (by predict) before this check, so that a drain
	// either waits for this request or this request sees the drain.
	if s.draining.Load() {
		c.Context().SetConnectionClose()
		return s.failure(errDraining, 0), ""
	}
	ref := r.m.pred.Load()
	if ref == nil {
		return s.failure(errNotReady, 0), ""
	}
	defer func() {
		if ans.version == "" {
			ans.version = ref.version
		}
	}()
	if g.Format != "" && !strings.EqualFold(g.Format, "json") {
		return s.failure(inputErr(-1, "", "sf-external-function-format is %q; modelserve speaks json", g.Format), 0), ""
	}
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return s.failure(err, 0), ""
	}
	defer cancel()
	faults.Inject(ctx, panics.Handler)

	key := batchKey(r.key, principal(c), g)
	if key != "" {
		if e := s.batches.get(key); e != nil {
			if !s.batches.failedAsync(e) {
				rec = nil // a retry computes nothing
				return s.retry(ctx, c, ref, e)
			}
			s.batches.forget(e) // its poll told the gateway to send it again
		}
	}
	ticket, body, err := s.admit(c, r, &ref)
	if err != nil {
		return s.failure(err, statusForBodyError(err)), ""
	}
	received := time.Now()
	defer func() { ans.received = received }()
	if key == "" {
		defer ticket.Done()
		b, err := s.decode(ctx, r, body)
		if err != nil {
			return s.failure(err, 0), ""
		}
		decoded := since(received)
		keepInputs(rec, b.inputs, b.rowIDs, true)
		// The inputs' memory goes back to the decoder's pool once no
		// call reads it (the answer needs only the row numbers).
		outs, err := ticket.RunBorrowed(ctx, b.inputs, func() { r.dec.release(b) })
		if err != nil {
			return s.failure(err, 0), ""
		}
		if rec != nil {
			rec.Outputs = outs
		}
		ans, encoded := s.encodeAnswer(r, b, outs)
		ans.stages = timed(decoded, ticket.Stages(), encoded)
		return ans, ""
	}

	e, fresh := s.batches.begin(key, s.batches.hash(body), 0)
	if !fresh {
		ticket.Done() // another attempt got there first
		ticket, rec = nil, nil
		return s.retry(ctx, c, ref, e)
	}
	begun = e
	// Decode here: the body belongs to the connection and is reused once
	// this handler returns, while the batch may outlive it (for a retry or
	// a poll). The decoded batch owns its memory.
	b, err := s.decode(ctx, r, body)
	decoded := since(received)
	if err != nil {
		ans := s.failure(err, 0)
		s.batches.finish(e, ans, ticket)
		begun, ticket = nil, nil
		return ans, "computed"
	}
	// The batch owns its inputs (none lent): the record reads them as they are.
	keepInputs(rec, b.inputs, b.rowIDs, false)
	async := s.cfg.Async.Always || s.cfg.Async.After > 0 && ref.Estimate(len(b.rowIDs)) > s.cfg.Async.After
	timeout := s.cfg.RequestTimeout
	if async {
		timeout = s.cfg.MaxRequestTimeout
		s.batches.markAsync(e)
	}
	// Queued here, so that a 202 means admitted: a queue with no room
	// answers 429 now, not to a later poll.
	batchCtx, cancel := context.WithTimeout(trace.ContextWithSpanContext(context.Background(), trace.SpanContextFromContext(ctx)), timeout)
	pending, err := ticket.Enqueue(batchCtx, b.inputs)
	if err != nil {
		cancel()
		ans := s.failure(err, 0)
		s.batches.finish(e, ans, ticket)
		begun, ticket = nil, nil
		return ans, "computed"
	}
	held, logged, who := ticket, rec, principal(c)
	begun, ticket, rec = nil, nil, nil // the batch holds them now
	s.batches.run(e, cancel, held, func() (ans answer) {
		defer func() {
			if v := recover(); v != nil {
				ans = s.failure(s.cfg.Panics.Recovered(panics.Batch, v), 0)
			}
			ended := ans
			ended.version = ref.version
			s.logAnswer(batchCtx, logged, ended, who, g, time.Since(start))
		}()
		outs, err := pending.Wait()
		if err != nil {
			return s.failure(err, 0)
		}
		if logged != nil {
			logged.Outputs = outs
		}
		faults.Inject(ctx, panics.Batch)
		ans, encoded := s.encodeAnswer(r, b, outs)
		ans.version = ref.version // a retry's answer names the version that computed it
		s.observeStages(batchCtx, r, ans.version, timed(decoded, pending.Stages(), encoded))
		return ans
	})
	if async {
		s.batches.async.Inc()
		return running, "async"
	}
	ans, err = s.batches.wait(ctx, e)
	if err != nil {
		return s.failure(err, 0), "computed"
	}
	return ans, "computed"
}

// decode reads a request body into its batch; a panic in the decoder
// (which reads what any caller sends) fails this request alone.
//
// Large bodies are decoded a few at a time (decoders): Go looks for
// network events only when a core runs out of work, or every 10 ms, so
// with every core decoding, a request to refuse or a finished batch
// would wait that long to be seen.
func (s *Server) decode(ctx context.Context, r *route, body []byte) (b *batch, err error) {
	if len(body) >= yieldBytes {
		select {
		case s.decoders <- struct{}{}:
			defer func() { <-s.decoders }()
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	defer s.cfg.Panics.Catch(panics.Decode, &err)
	faults.Inject(ctx, panics.Decode)
	return r.dec.decode(body, decodeOptions{nullAsNaN: r.fn.NullAsNaN})
}

// admit is readBody on the version *ref names, or on the one served now
// when the model switched versions since the request looked.
func (s *Server) admit(c *fiber.Ctx, r *route, ref **admitterRef) (*engine.Ticket, []byte, error) {
	ticket, body, err := s.readBody(c, *ref)
	if r.switched(err, ref) {
		ticket, body, err = s.readBody(c, *ref)
	}
	return ticket, body, err
}

// switched reports whether admission refused a request with ErrClosed
// because the model switched versions since the request looked (the old
// one drains and closes); *ref then names the version served now, which
// takes the request.
func (r *route) switched(err error, ref **admitterRef) bool {
	if !errors.Is(err, engine.ErrClosed) {
		return false
	}
	now := r.m.pred.Load()
	if now == nil || now == *ref {
		return false
	}
	*ref = now
	return true
}

// readBody admits a request and reads its body: the bytes as sent count
// against the memory budget before anything else, and so does each buffer
// a compressed body inflates into.
//
// Admission sees the request from its headers: a refused body is never
// read into memory (finishBody discards it as it comes).
func (s *Server) readBody(c *fiber.Ctx, ref Admitter) (*engine.Ticket, []byte, error) {
	if err := checkDeclared(c, s.cfg.MaxBodyBytes); err != nil {
		return nil, nil, err
	}
	declared := max(int64(c.Request().Header.ContentLength()), 0) // chunked: charged once read
	prio, err := s.priority(c)
	if err != nil {
		return nil, nil, err
	}
	ticket, err := ref.AdmitArrival(engine.Arrival{Bytes: declared, Priority: prio, Caller: caller(c)})
	if err != nil {
		return nil, nil, err
	}
	rawBody, err := s.readRaw(c, s.cfg.MaxBodyBytes)
	if err == nil && int64(len(rawBody)) > declared {
		err = ticket.Grow(int64(len(rawBody)) - declared)
	}
	if err != nil {
		ticket.Done()
		return nil, nil, err
	}
	raw := int64(len(rawBody))
	body, err := decompress(rawBody, c.Get(fiber.HeaderContentEncoding), s.cfg.MaxBodyBytes, s.cfg.MaxInflateRatio, ticket.Grow)
	if err != nil {
		ticket.Done()
		return nil, nil, err
	}
	if int64(len(body)) != raw {
		ticket.Resize(raw + int64(len(body))) // the buffers it grew in are gone
	}
	return ticket, body, nil
}

// retry answers a batch id already known: conflicting, joined or replayed.
func (s *Server) retry(ctx context.Context, c *fiber.Ctx, ref Admitter, e *entry) (answer, string) {
	body, err := s.readRaw(c, s.cfg.MaxBodyBytes)
	if err != nil {
		return s.failure(err, statusForBodyError(err)), ""
	}
	if len(c.Request().Header.ContentEncoding()) > 0 {
		// Inflated only to compare, within the memory budget.
		ticket, inflated, err := s.readBody(c, ref)
		if err != nil {
			return s.failure(err, statusForBodyError(err)), ""
		}
		ticket.Done()
		body = inflated
	}
	if s.batches.hash(body) != e.hash {
		return answer{status: http.StatusConflict, body: errorBody("Batch id reused: this batch id was sent with a different body; a retry must send the same rows")}, "conflict"
	}
	select {
	case <-e.done:
		s.batches.retries.WithLabelValues("replayed").Inc()
		return e.ans, "replayed"
	default:
	}
	s.batches.retries.WithLabelValues("joined").Inc()
	if s.batches.isAsync(e) {
		return running, "joined"
	}
	ans, err := s.batches.wait(ctx, e)
	if err != nil {
		return s.failure(err, 0), "joined"
	}
	return ans, "joined"
}

// encodeAnswer writes one batch's outputs as an answer, and says when
// that began and how long it took.
func (s *Server) encodeAnswer(r *route, b *batch, outs []model.Tensor) (answer, interval) {
	began := time.Now()
	buf := s.bufs.get()
	defer s.bufs.put(buf)
	*buf = r.enc.encode((*buf)[:0], b, outs)
	return answer{status: http.StatusOK, body: append([]byte(nil), *buf...), rows: len(b.rowIDs)}, since(began)
}

// failure is the one place an error becomes a status and a message; a
// non-zero status overrides the default for errors without their own.
func (s *Server) failure(err error, status int) answer {
	var in *bind.Error
	var rejected *engine.Rejection
	// The gateway's wording puts a prefix before a failure's or a
	// mistake's own message; the protocol's answers carry the message alone.
	prefix, msg := "Prediction failed: ", err.Error()
	ans := answer{status: http.StatusInternalServerError}
	switch {
	case errors.As(err, &ans.panic):
		// Worded in respond, which knows the request's id.
	case errors.As(err, &in):
		ans.status, prefix, msg = http.StatusBadRequest, "Input data malformed: ", in.Error()
	case errors.As(err, &rejected):
		ans.reason, prefix = rejected.Reason, ""
		if errors.Is(err, engine.ErrTooLarge) {
			ans.status, msg = http.StatusRequestEntityTooLarge, "Request too large: "+rejected.Detail
			break
		}
		// The gateway slows down and retries on 429: the one signal for
		// "not now", with the time the queue needs to drain.
		ans.status, msg, ans.retryAfter = http.StatusTooManyRequests, "Too many requests", retrySeconds(rejected.RetryAfter)
	case errors.Is(err, errNotReady), errors.Is(err, errDraining), errors.Is(err, engine.ErrClosed):
		ans.status, prefix, msg, ans.retryAfter = http.StatusServiceUnavailable, "", "Service unavailable: "+err.Error(), 1
	case errors.Is(err, context.DeadlineExceeded):
		ans.status, prefix, msg = http.StatusGatewayTimeout, "", "Prediction timed out: the request's deadline passed before it ran to the end"
	case errors.Is(err, context.Canceled):
		ans.status, prefix, msg = http.StatusServiceUnavailable, "", "Request canceled"
	case errors.Is(err, errUnsupportedEncoding), errors.Is(err, errBodyTooLarge), errors.Is(err, errSlowBody),
		errors.Is(err, errBodyCut), errors.Is(err, errBodyUnreadable):
		prefix = ""
	}
	if status != 0 && ans.status == http.StatusInternalServerError || status == http.StatusMethodNotAllowed {
		ans.status = status
	}
	ans.message = msg
	ans.body = errorBody(prefix + msg)
	return ans
}

// retrySeconds rounds a drain time up to whole seconds, at least one.
func retrySeconds(d time.Duration) int {
	return max(1, int((d+time.Second-1)/time.Second))
}

func errorBody(msg string) []byte {
	return append(model.AppendJSONString([]byte(`{"error":`), msg), '}')
}

// respond writes an answer and accounts for it.
func (s *Server) respond(c *fiber.Ctx, r *route, g gateway, ans answer, how string, start time.Time) {
	if ans.version != "" {
		c.Set(VersionHeader, ans.version)
	}
	if ans.retryAfter > 0 {
		c.Set(fiber.HeaderRetryAfter, strconv.Itoa(ans.retryAfter))
	}
	if ans.reason != "" {
		c.Set(ReasonHeader, ans.reason)
	}
	writing := time.Now()
	switch {
	case ans.panic != nil:
		s.writePanic(c, ans.panic)
	case ans.headerLen > 0:
		c.Set(InferenceHeaderLength, strconv.Itoa(ans.headerLen))
		s.writeBody(c, ans.status, ans.contentType, ans.body)
	default:
		s.writeBody(c, ans.status, fiber.MIMEApplicationJSON, ans.body)
	}
	elapsed := time.Since(start)
	ctx := c.UserContext()
	if s.cfg.Tracer != nil { // no clock read for traces when there are none
		if !ans.received.IsZero() {
			s.traceStage(ctx, "receive", interval{start, ans.received.Sub(start)})
		}
		s.traceStage(ctx, "write", since(writing))
	}
	counted := ans
	if how == "replayed" || how == "polled" {
		counted.rows = 0 // counted when computed
	}
	if how != "" {
		// A gateway batch's computation is timed when it ends (it may
		// end after this answer, async); its answers are not timed.
		counted.stages = stageTimes{}
	}
	s.count(ctx, r, counted, elapsed)
	endSpan(trace.SpanFromContext(ctx), ans, g, how, start.Add(elapsed))
	who := principal(c)
	s.logAnswer(ctx, ans.log, ans, who, g, elapsed)
	if ans.status >= 500 && ans.status != http.StatusServiceUnavailable && ans.panic == nil {
		s.cfg.Log.Warn("prediction failed", traceAttrs(ctx, append(g.attrs(), "principal", who, "model", r.m.name, "version", ans.version, "function", r.fn.Name, "status", ans.status, "error", string(ans.body)))...)
	} else if ans.status == http.StatusTooManyRequests {
		s.cfg.Log.Debug("request refused", traceAttrs(ctx, append(g.attrs(), "principal", who, "model", r.m.name, "version", ans.version, "function", r.fn.Name, "reason", ans.reason, "retry_after", ans.retryAfter))...)
	}
	// The audit line: every gateway batch, and every request when callers
	// authenticate. It names the principal, never the credential.
	if g.present() || s.cfg.Auth.Enabled() {
		msg := "request"
		if g.present() {
			msg = "batch"
		}
		s.cfg.Audit.Info(msg, traceAttrs(ctx, append(g.attrs(), "principal", who, "model", r.m.name, "version", ans.version, "function", r.fn.Name, "rows", ans.rows, "status", ans.status,
			"how", how, "ms", float64(elapsed.Microseconds())/1000))...)
	}
}

// count accounts for an answer in the request metrics (and its stages in
// the trace ctx holds).
func (s *Server) count(ctx context.Context, r *route, ans answer, elapsed time.Duration) {
	s.requests.WithLabelValues(r.m.name, ans.version, r.fn.Name, r.protocol, outcome(ans.status)).Inc()
	s.duration.WithLabelValues(r.m.name, ans.version, r.fn.Name, r.protocol).Observe(elapsed.Seconds())
	if ans.status == http.StatusOK && ans.rows > 0 {
		s.rows.WithLabelValues(r.m.name, ans.version, r.fn.Name, r.protocol).Add(float64(ans.rows))
	}
	s.observeStages(ctx, r, ans.version, ans.stages)
}

// observeStages times one computation's stages, if it has them, in the
// metrics and the trace ctx holds.
func (s *Server) observeStages(ctx context.Context, r *route, version string, st stageTimes) {
	if !st.set {
		return
	}
	s.traceStages(ctx, st)
	for _, stage := range [...]struct {
		name string
		i    interval
	}{{"decode", st.decode}, {"queue", st.queue}, {"execute", st.execute}, {"encode", st.encode}} {
		s.stages.WithLabelValues(r.m.name, version, r.fn.Name, r.protocol, stage.name).Observe(stage.i.d.Seconds())
	}
}

// writePanic answers 500 for a recovered panic, with an id that finds the
// log line holding its stack (logged once, by the first request to report
// it).
func (s *Server) writePanic(c *fiber.Ctx, p *panics.Error) {
	id := requestID(c)
	c.Set(RequestIDHeader, id)
	writeJSONError(c, http.StatusInternalServerError, "Internal error: the server failed on this request (request id "+id+
		") and goes on serving; the failure is logged under that id")
	attrs := []any{"request_id", id, "where", p.Where, "panic", fmt.Sprint(p.Value), "path", c.Path()}
	if p.FirstReport() {
		attrs = append(attrs, "stack", string(p.Stack))
	}
	s.cfg.Log.Error("panic recovered", attrs...)
}

// RequestIDHeader carries a request's id: the caller's own, when it sent a
// sane one, else one made here.
const RequestIDHeader = "X-Request-Id"

// requestID is the caller's X-Request-Id if it is at most 128 letters,
// digits and ._:- characters, else a new random one.
func requestID(c *fiber.Ctx) string {
	if id := c.Get(RequestIDHeader); id != "" && len(id) <= 128 && strings.Trim(id, idChars) == "" {
		return id
	}
	return strconv.FormatUint(rand.Uint64(), 16)
}

const idChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789._:-"

// requestContext gives the request its deadline and ends early if the
// caller hangs up.
func (s *Server) requestContext(c *fiber.Ctx) (context.Context, func(), error) {
	timeout := s.cfg.RequestTimeout
	if h := c.Get(TimeoutHeader); h != "" {
		d, err := parseTimeout(h)
		if err != nil {
			return nil, nil, inputErr(-1, "", "%s: %v", TimeoutHeader, err)
		}
		timeout = min(d, s.cfg.MaxRequestTimeout)
	}
	ctx := c.UserContext()
	if faults.Enabled { // a test build: the request may ask for a fault
		// A copy: fiber's header strings are the connection's buffer,
		// reused once the handler returns, and a batch can outlive it.
		ctx = faults.With(ctx, strings.Clone(c.Get(faults.Header)))
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	unwatch := s.hangups.watch(c.Context().Conn(), cancel)
	return ctx, func() {
		unwatch()
		cancel()
	}, nil
}

// parseTimeout reads seconds ("2.5") or a Go duration ("250ms").
func parseTimeout(h string) (time.Duration, error) {
	d, err := time.ParseDuration(h)
	if err != nil {
		secs, ferr := strconv.ParseFloat(h, 64)
		if ferr != nil {
			return 0, fmt.Errorf("%q is neither seconds nor a duration like 250ms", h)
		}
		d = time.Duration(secs * float64(time.Second))
	}
	if d <= 0 {
		return 0, fmt.Errorf("%q is not a positive time", h)
	}
	return d, nil
}

func outcome(status int) string {
	switch {
	case status == http.StatusOK:
		return "ok"
	case status == http.StatusAccepted:
		return "accepted"
	case status == http.StatusTooManyRequests:
		return "overloaded"
	case status == http.StatusServiceUnavailable:
		return "unavailable"
	case status == http.StatusGatewayTimeout:
		return "timeout"
	case status < 500:
		return "bad_request"
	}
	return "error"
}

// buffers pools encoding buffers.
type buffers struct{ p sync.Pool }

func (b *buffers) get() *[]byte {
	if buf, ok := b.p.Get().(*[]byte); ok {
		return buf
	}
	return new([]byte)
}

func (b *buffers) put(buf *[]byte) { b.p.Put(buf) }

// Async says when a gateway batch is answered 202 and polled.
type Async struct {
	// Always runs every gateway batch asynchronously.
	Always bool
	// After runs a batch asynchronously when it is expected to take longer
	// than this; 0 never does.
	After time.Duration
}

// ParseAsync reads --async: never, always, or a duration.
func ParseAsync(s string) (Async, error) {
	switch strings.ToLower(s) {
	case "never", "0":
		return Async{}, nil
	case "always":
		return Async{Always: true}, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return Async{}, fmt.Errorf("async %q: write never, always or a duration like 30s", s)
	}
	return Async{After: d}, nil
}

func (a Async) String() string {
	switch {
	case a.Always:
		return "always"
	case a.After <= 0:
		return "never"
	}
	return a.After.String()
}

// PriorityHeader sets a request's priority: high, normal or low.
const PriorityHeader = "X-Priority"

// priority is the request's X-Priority, else the server's default.
func (s *Server) priority(c *fiber.Ctx) (engine.Priority, error) {
	h := c.Get(PriorityHeader)
	if h == "" {
		return s.cfg.DefaultPriority, nil
	}
	p, err := engine.ParsePriority(h)
	if err != nil {
		return p, inputErr(-1, "", "%s: %v", PriorityHeader, err)
	}
	return p, nil
}

// caller names who a request comes from, for admission's fair share: the
// authenticated principal, else the gateway's query, else the address.
func caller(c *fiber.Ctx) string {
	if p := principal(c); p != "anonymous" {
		return p
	}
	if q := c.Get(functionPrefix + "current-query-id"); q != "" {
		return "query:" + strings.Clone(q)
	}
	return "addr:" + c.IP()
}
