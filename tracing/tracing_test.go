package tracing

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	"google.golang.org/grpc"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// stuck is an exporter whose first export blocks until released, like a
// collector that stopped answering.
type stuck struct {
	release  chan struct{}
	exported atomic.Int64
}

func (s *stuck) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	select {
	case <-s.release:
	case <-ctx.Done():
		return ctx.Err()
	}
	s.exported.Add(int64(len(spans)))
	return nil
}

func (s *stuck) Shutdown(context.Context) error { return nil }

// TestQueue_dropsAndCountsWhenTheCollectorStalls: with the exporter stuck,
// ending spans never waits; what finds the queue full is dropped and
// counted, and every span is either exported or counted as dropped.
func TestQueue_dropsAndCountsWhenTheCollectorStalls(t *testing.T) {
	exp := &stuck{release: make(chan struct{})}
	reg := prometheus.NewRegistry()
	q, err := newQueue(exp, 8, reg, nil)
	if err != nil {
		t.Fatal(err)
	}
	p := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(q), sdktrace.WithSampler(sdktrace.AlwaysSample()))
	tracer := p.Tracer("test")
	const spans = 5000
	began := time.Now()
	for range spans {
		_, s := tracer.Start(context.Background(), "x")
		s.End()
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("ending %d spans with the collector stuck took %v", spans, took)
	}
	dropped := testutil.ToFloat64(q.dropped)
	if dropped == 0 {
		t.Fatal("nothing was dropped with the exporter stuck and a queue of 8")
	}
	close(exp.release)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := p.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	exported := testutil.ToFloat64(q.exported)
	if int64(exported) != exp.exported.Load() || exported+dropped != spans {
		t.Errorf("exported %v (exporter saw %d) + dropped %v, want %d in all", exported, exp.exported.Load(), dropped, spans)
	}
	if n, err := testutil.GatherAndCount(reg, "modelserve_trace_spans_total"); err != nil || n != 3 {
		t.Errorf("modelserve_trace_spans_total has %d series (%v), want 3 outcomes", n, err)
	}
}

// TestStart_offUnlessAskedFor: tracing is off without an endpoint, with a
// zero sample or with OTEL_SDK_DISABLED; a bad endpoint or protocol is an
// error that says what to give.
func TestStart_offUnlessAskedFor(t *testing.T) {
	for _, k := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_PROTOCOL",
		"OTEL_EXPORTER_OTLP_TRACES_PROTOCOL", "OTEL_SDK_DISABLED"} {
		t.Setenv(k, "")
	}
	ctx := context.Background()
	tests := []struct {
		name    string
		cfg     Config
		env     map[string]string
		on      bool
		wantErr bool
	}{
		{name: "no endpoint", cfg: Config{Sample: 1}},
		{name: "zero sample", cfg: Config{Endpoint: "http://127.0.0.1:1", Sample: 0}},
		{name: "disabled", cfg: Config{Endpoint: "http://127.0.0.1:1", Sample: 1}, env: map[string]string{"OTEL_SDK_DISABLED": "true"}},
		{name: "http", cfg: Config{Endpoint: "http://127.0.0.1:1", Sample: 1}, on: true},
		{name: "endpoint from the environment", cfg: Config{Sample: 1}, env: map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://127.0.0.1:1"}, on: true},
		{name: "grpc from the environment", cfg: Config{Endpoint: "127.0.0.1:1", Sample: 1}, env: map[string]string{"OTEL_EXPORTER_OTLP_PROTOCOL": "grpc"}, on: true},
		{name: "not a URL", cfg: Config{Endpoint: "127.0.0.1:1", Sample: 1}, wantErr: true},
		{name: "unknown protocol", cfg: Config{Endpoint: "http://127.0.0.1:1", Protocol: "http/json", Sample: 1}, wantErr: true},
		{name: "sample above one", cfg: Config{Endpoint: "http://127.0.0.1:1", Sample: 2}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			tr, err := Start(ctx, tt.cfg)
			if (err != nil) != tt.wantErr {
				t.Fatalf("Start = %v, want an error: %v", err, tt.wantErr)
			}
			if (tr != nil) != tt.on {
				t.Fatalf("tracing on = %v, want %v", tr != nil, tt.on)
			}
			if (tr.Tracer() != nil) != tt.on {
				t.Errorf("a tracer = %v, want %v", tr.Tracer() != nil, tt.on)
			}
			tr.Shutdown(ctx)
		})
	}
}

// grpcCollector is an OTLP/gRPC trace receiver.
type grpcCollector struct {
	coltrace.UnimplementedTraceServiceServer
	spans chan string
}

func (c *grpcCollector) Export(_ context.Context, req *coltrace.ExportTraceServiceRequest) (*coltrace.ExportTraceServiceResponse, error) {
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			for _, s := range ss.GetSpans() {
				c.spans <- s.GetName()
			}
		}
	}
	return &coltrace.ExportTraceServiceResponse{}, nil
}

// TestStart_exportsOverGRPC: with the grpc protocol, spans reach a real
// OTLP/gRPC receiver (the HTTP path is tested against the server).
func TestStart_exportsOverGRPC(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	col := &grpcCollector{spans: make(chan string, 16)}
	coltrace.RegisterTraceServiceServer(srv, col)
	go srv.Serve(ln)
	defer srv.Stop()
	t.Setenv("OTEL_SDK_DISABLED", "")
	tr, err := Start(context.Background(), Config{Endpoint: ln.Addr().String(), Protocol: GRPC, Sample: 1})
	if err != nil || tr == nil {
		t.Fatalf("Start = %v, %v", tr, err)
	}
	_, span := tr.Tracer().Start(context.Background(), "over-grpc")
	span.End()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := tr.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case name := <-col.spans:
		if name != "over-grpc" {
			t.Errorf("received %q", name)
		}
	default:
		t.Fatal("no span reached the gRPC receiver")
	}
}

// TestStart_rootsAreTheFrontsToSample: the fronts sample roots at
// RootShare before starting a span, so the SDK records every root it is
// given (sampling again there would trace the share squared); a parent's
// decision is followed.
func TestStart_rootsAreTheFrontsToSample(t *testing.T) {
	t.Setenv("OTEL_SDK_DISABLED", "")
	tr, err := Start(context.Background(), Config{Endpoint: "http://127.0.0.1:1", Sample: 0.01})
	if err != nil || tr == nil {
		t.Fatalf("Start = %v, %v", tr, err)
	}
	defer func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		tr.Shutdown(ctx)
	}()
	if tr.RootShare() != 0.01 {
		t.Errorf("RootShare = %v, want 0.01", tr.RootShare())
	}
	for range 100 {
		ctx, span := tr.Tracer().Start(context.Background(), "root")
		if !span.IsRecording() {
			t.Fatal("a root the front chose to trace was not recorded")
		}
		_, child := tr.Tracer().Start(ctx, "child")
		if !child.IsRecording() {
			t.Fatal("a sampled parent's child was not recorded")
		}
	}
	unsampled := trace.ContextWithSpanContext(context.Background(), trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: trace.TraceID{1}, SpanID: trace.SpanID{1}, Remote: true}))
	if _, span := tr.Tracer().Start(unsampled, "x"); span.IsRecording() {
		t.Error("the child of an unsampled caller was recorded")
	}
}
