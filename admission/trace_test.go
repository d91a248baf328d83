package admission

import (
	"context"
	"testing"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
)

// TestQueue_tracesEachCallLinkedToItsSampledRequests: a call that runs
// rows of sampled requests is a "batch" span, a child of the first such
// request and linked to each of them once; an unsampled request in it is
// not linked, and a call of unsampled requests alone is not traced. Each
// request's stages name the batch spans that ran it.
func TestQueue_tracesEachCallLinkedToItsSampledRequests(t *testing.T) {
	rec := tracetest.NewSpanRecorder()
	tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec)).Tracer("test")
	q, g, _ := gated(t, Config{Tracer: tracer, MaxBatchRows: 16})
	busy := make(chan submitted, 1)
	if err := submit(q, Normal, "first", 0, 1, busy); err != nil { // unsampled, alone in its call
		t.Fatal(err)
	}
	<-g.started

	sampled := func(name string) context.Context {
		ctx, span := tracer.Start(context.Background(), name)
		span.End()
		return ctx
	}
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{9}, SpanID: trace.SpanID{9}}))
	type queued struct {
		ctx  context.Context
		tk   *Ticket
		pend *Pending
	}
	var reqs []queued
	for _, ctx := range []context.Context{sampled("a"), unsampled, sampled("b")} {
		tk, err := q.AdmitArrival(Arrival{Priority: Normal, Caller: "c"})
		if err != nil {
			t.Fatal(err)
		}
		defer tk.Done()
		pend, err := tk.Enqueue(ctx, rowsOfValue(1, 2))
		if err != nil {
			t.Fatal(err)
		}
		reqs = append(reqs, queued{ctx, tk, pend})
	}
	g.release <- struct{}{} // the first call ends; the three share the next
	<-g.started
	g.release <- struct{}{}
	for _, r := range reqs {
		if _, err := r.pend.Wait(); err != nil {
			t.Fatal(err)
		}
	}
	if (<-busy).err != nil {
		t.Fatal("the first request failed")
	}

	var batches []sdktrace.ReadOnlySpan
	for _, s := range rec.Ended() {
		if s.Name() == "batch" {
			batches = append(batches, s)
		}
	}
	if len(batches) != 1 {
		t.Fatalf("%d batch spans, want 1 (the call of the unsampled request alone is not traced)", len(batches))
	}
	b := batches[0]
	a, c := trace.SpanContextFromContext(reqs[0].ctx), trace.SpanContextFromContext(reqs[2].ctx)
	if b.Parent().SpanID() != a.SpanID() || b.SpanContext().TraceID() != a.TraceID() {
		t.Errorf("the batch span's parent = %v, want the first sampled request's span %v", b.Parent(), a)
	}
	links := b.Links()
	if len(links) != 2 || links[0].SpanContext.SpanID() != a.SpanID() || links[1].SpanContext.SpanID() != c.SpanID() {
		t.Errorf("the batch span links %v, want the two sampled requests", links)
	}
	for _, kv := range b.Attributes() {
		if kv.Key == "modelserve.batch.rows" && kv.Value.AsInt64() != 6 {
			t.Errorf("batch rows = %d, want 6", kv.Value.AsInt64())
		}
	}
	for i, r := range reqs {
		st := r.pend.Stages()
		if len(st.Batches) != 1 || st.Batches[0].SpanID() != b.SpanContext().SpanID() {
			t.Errorf("request %d's stages name the calls %v, want the batch span", i, st.Batches)
		}
	}
}
