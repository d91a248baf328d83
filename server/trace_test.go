package server

import (
	"context"
	"math"
	"testing"
	"time"

	"go.opentelemetry.io/otel/propagation"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/modelserve/modelserve/model"
)

// TestStartSpan_rootsSampledByShareCallersFollowed: requests without a
// traceparent are traced at the root share (the others get no span at
// all); a caller's sampled traceparent is always followed, an unsampled
// one never recorded.
func TestStartSpan_rootsSampledByShareCallersFollowed(t *testing.T) {
	tests := []struct {
		roots       float64
		traceparent string
		want        float64 // share recorded
	}{
		{0.25, "", 0.25},
		{0, "", 1}, // 0: the tracer (AlwaysSample here) decides
		{0.25, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01", 1},
		{0.25, "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00", 0},
	}
	for _, tt := range tests {
		rec := tracetest.NewSpanRecorder()
		tracer := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(rec),
			sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample()))).Tracer("test")
		s := &Server{cfg: Config{Tracer: tracer, TraceRoots: tt.roots}}
		r := &route{m: &served{name: "m"}, fn: model.Function{Name: "f"}, spanName: "POST /m/f"}
		const n = 4000
		for range n {
			carrier := propagation.MapCarrier{}
			if tt.traceparent != "" {
				carrier["traceparent"] = tt.traceparent
			}
			_, span := s.startSpan(context.Background(), carrier, r, time.Now())
			if span != nil {
				span.End()
			}
		}
		if got := float64(len(rec.Ended())) / n; math.Abs(got-tt.want) > 0.04 {
			t.Errorf("roots %v, traceparent %q: %v recorded, want %v", tt.roots, tt.traceparent, got, tt.want)
		}
	}
}
