package server

import (
	"context"
	"math/rand/v2"
	"net/http"
	"time"

	"github.com/gofiber/fiber/v2"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
	"google.golang.org/grpc/metadata"
)

// A request's trace: its span (the caller's traceparent its parent, when
// sent), then a child for each stage. The stages' spans are made once
// their times are known, with those times: receive (the body read and
// inflated), decode, queue (admission's wait until its first call ran),
// execute (linked to the calls, "batch" spans, that ran its rows), encode
// and write (the answer handed to the connection).

// interval is when a stage began and how long it took.
type interval struct {
	at time.Time
	d  time.Duration
}

// since is the interval from at until now.
func since(at time.Time) interval { return interval{at, time.Since(at)} }

func (i interval) end() time.Time { return i.at.Add(i.d) }

// headerCarrier reads a request's trace headers for the propagator.
type headerCarrier struct{ c *fiber.Ctx }

func (h headerCarrier) Get(key string) string { return h.c.Get(key) }
func (h headerCarrier) Set(string, string)    {}
func (h headerCarrier) Keys() []string        { return []string{"traceparent", "tracestate"} }

// startSpan starts a request's span, a child of the caller's when its
// headers carry one; the context it returns holds it. Nothing is started
// when tracing is off.
func (s *Server) startSpan(parent context.Context, carrier propagation.TextMapCarrier, r *route, start time.Time) (context.Context, trace.Span) {
	if s.cfg.Tracer == nil {
		return parent, nil
	}
	if s.cfg.TraceRoots > 0 && s.cfg.TraceRoots < 1 && carrier.Get("traceparent") == "" && rand.Float64() >= s.cfg.TraceRoots {
		return parent, nil
	}
	ctx := propagation.TraceContext{}.Extract(parent, carrier)
	// Most requests are not sampled: their span records nothing, so its
	// attributes are set only once it is known to record.
	ctx, span := s.cfg.Tracer.Start(ctx, r.spanName, trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(start))
	if span.IsRecording() {
		span.SetAttributes(attribute.String("modelserve.model", r.m.name), attribute.String("modelserve.function", r.fn.Name),
			attribute.String("modelserve.protocol", r.protocol))
	}
	return ctx, span
}

// endSpan ends a request's span with how it was answered.
func endSpan(span trace.Span, ans answer, g gateway, how string, end time.Time) {
	if span == nil || !span.IsRecording() {
		return
	}
	span.SetAttributes(attribute.Int("http.response.status_code", ans.status), attribute.String("modelserve.version", ans.version),
		attribute.Int("modelserve.rows", ans.rows))
	if g.present() {
		span.SetAttributes(attribute.String("modelserve.gateway.query_id", g.QueryID), attribute.String("modelserve.gateway.batch_id", g.BatchID))
	}
	if how != "" {
		span.SetAttributes(attribute.String("modelserve.gateway.answered", how))
	}
	if ans.reason != "" {
		span.SetAttributes(attribute.String("modelserve.rejected", ans.reason))
	}
	if ans.status >= http.StatusInternalServerError {
		span.SetStatus(codes.Error, ans.message)
	}
	span.End(trace.WithTimestamp(end))
}

// traceStage adds a finished stage to the request ctx holds, if sampled.
// The request's span may have ended already (an async gateway batch):
// its children still join its trace.
func (s *Server) traceStage(ctx context.Context, name string, i interval, opts ...trace.SpanStartOption) {
	if s.cfg.Tracer == nil || i.at.IsZero() || !trace.SpanContextFromContext(ctx).IsSampled() {
		return
	}
	_, span := s.cfg.Tracer.Start(ctx, name, append(opts, trace.WithTimestamp(i.at))...)
	span.End(trace.WithTimestamp(i.end()))
}

// traceStages adds a computation's stages to the request ctx holds.
func (s *Server) traceStages(ctx context.Context, st stageTimes) {
	if !st.set || s.cfg.Tracer == nil || !trace.SpanContextFromContext(ctx).IsSampled() {
		return
	}
	s.traceStage(ctx, "decode", st.decode)
	s.traceStage(ctx, "queue", st.queue)
	links := make([]trace.Link, len(st.batches))
	for i, b := range st.batches {
		links[i] = trace.Link{SpanContext: b}
	}
	s.traceStage(ctx, "execute", st.execute, trace.WithLinks(links...))
	s.traceStage(ctx, "encode", st.encode)
}

// traceID is the trace a request belongs to, for its log lines ("" when
// it has none).
func traceID(ctx context.Context) string {
	sc := trace.SpanContextFromContext(ctx)
	if !sc.HasTraceID() {
		return ""
	}
	return sc.TraceID().String()
}

// traceAttrs are the log attributes naming a request's trace.
func traceAttrs(ctx context.Context, attrs []any) []any {
	if id := traceID(ctx); id != "" {
		return append(attrs, "trace_id", id)
	}
	return attrs
}

// metadataCarrier reads a gRPC call's trace metadata for the propagator.
type metadataCarrier metadata.MD

func (m metadataCarrier) Get(key string) string {
	if v := metadata.MD(m).Get(key); len(v) > 0 {
		return v[0]
	}
	return ""
}
func (m metadataCarrier) Set(string, string) {}
func (m metadataCarrier) Keys() []string     { return []string{"traceparent", "tracestate"} }

// spanName is a route's span name: its method and path.
func spanName(method, path string) string {
	return method + " " + path
}

// traceRequest starts a request's span, which its context then holds.
func (s *Server) traceRequest(c *fiber.Ctx, r *route, start time.Time) {
	if s.cfg.Tracer == nil {
		return
	}
	ctx, _ := s.startSpan(c.UserContext(), headerCarrier{c}, r, start)
	c.SetUserContext(ctx)
}
