// Package tracing exports modelserve's spans over OTLP (HTTP or gRPC)
// with the OpenTelemetry SDK, through a bounded queue: a request never
// waits for a collector, and spans that find the queue full are dropped
// and counted.
package tracing

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Protocols OTLP is sent over, as OTEL_EXPORTER_OTLP_PROTOCOL names them.
const (
	HTTP = "http/protobuf"
	GRPC = "grpc"
)

// Defaults for Config.
const (
	DefaultSample     = 0.01
	DefaultQueueSpans = 8192
	// exportBatch is the most spans one export sends; exportEvery how
	// long a partial batch waits; exportTimeout bounds one export.
	exportBatch   = 512
	exportEvery   = time.Second
	exportTimeout = 10 * time.Second
)

// Config says where spans go and which requests are traced. Empty fields
// take the standard OTEL_* variables, then the defaults.
type Config struct {
	// Endpoint is the collector: a URL (http://collector:4318 for OTLP
	// over HTTP, whose path defaults to /v1/traces; collector:4317 or
	// http://collector:4317 for gRPC). Empty: OTEL_EXPORTER_OTLP_TRACES_ENDPOINT
	// or OTEL_EXPORTER_OTLP_ENDPOINT; with neither, tracing is off.
	Endpoint string
	// Protocol is HTTP or GRPC (empty: OTEL_EXPORTER_OTLP_TRACES_PROTOCOL,
	// OTEL_EXPORTER_OTLP_PROTOCOL, else HTTP).
	Protocol string
	// Sample is the share of traces started here that are recorded; a
	// caller's traceparent decides for its own trace (parent-based). Zero
	// turns tracing off; SampleFromEnv leaves it to OTEL_TRACES_SAMPLER.
	Sample        float64
	SampleFromEnv bool
	// QueueSpans bounds the spans waiting for export.
	QueueSpans int
	// Service and Version name this process in the spans' resource
	// (OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES win).
	Service, Version string
	Registerer       prometheus.Registerer
	Log              *slog.Logger
}

// Tracing is a running tracer provider and its export queue.
type Tracing struct {
	provider *sdktrace.TracerProvider
	tracer   trace.Tracer
	// Endpoint and Protocol are where spans go, for the log.
	Endpoint, Protocol string
	// share is the ratio sampler's, 1 when the environment's sampler
	// decides.
	share float64
}

// Start sets up tracing as cfg (and the environment) say; it returns nil
// when tracing is off: no endpoint, a zero sample or OTEL_SDK_DISABLED.
func Start(ctx context.Context, cfg Config) (*Tracing, error) {
	if strings.EqualFold(os.Getenv("OTEL_SDK_DISABLED"), "true") {
		return nil, nil
	}
	if !cfg.SampleFromEnv && cfg.Sample <= 0 {
		return nil, nil
	}
	if cfg.Sample > 1 {
		return nil, fmt.Errorf("the trace sample is a share of requests, from 0 to 1; got %g", cfg.Sample)
	}
	endpoint := firstSet(cfg.Endpoint, os.Getenv("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"), os.Getenv("OTEL_EXPORTER_OTLP_ENDPOINT"))
	if endpoint == "" {
		return nil, nil
	}
	protocol := firstSet(cfg.Protocol, os.Getenv("OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"), os.Getenv("OTEL_EXPORTER_OTLP_PROTOCOL"), HTTP)
	exp, err := exporter(ctx, endpoint, protocol)
	if err != nil {
		return nil, err
	}
	if cfg.QueueSpans <= 0 {
		cfg.QueueSpans = DefaultQueueSpans
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.Registerer == nil {
		cfg.Registerer = prometheus.NewRegistry()
	}
	q, err := newQueue(exp, cfg.QueueSpans, cfg.Registerer, cfg.Log)
	if err != nil {
		exp.Shutdown(ctx)
		return nil, err
	}
	res, err := resource.New(ctx, resource.WithAttributes(attribute.String("service.name", firstSet(cfg.Service, "modelserve")),
		attribute.String("service.version", cfg.Version)), resource.WithFromEnv(), resource.WithHost())
	if err != nil && res == nil {
		q.Shutdown(ctx)
		return nil, fmt.Errorf("describing this process for traces: %w", err)
	}
	opts := []sdktrace.TracerProviderOption{sdktrace.WithSpanProcessor(q), sdktrace.WithResource(res)}
	if !cfg.SampleFromEnv {
		// The fronts sample the roots, at RootShare, before starting a
		// span (most requests then cost nothing); the SDK records every
		// root it is given and follows each parent's decision.
		opts = append(opts, sdktrace.WithSampler(sdktrace.ParentBased(sdktrace.AlwaysSample())))
	}
	p := sdktrace.NewTracerProvider(opts...)
	share := cfg.Sample
	if cfg.SampleFromEnv {
		share = 1
	}
	return &Tracing{provider: p, tracer: p.Tracer("github.com/modelserve/modelserve"), Endpoint: endpoint, Protocol: protocol, share: share}, nil
}

// RootShare is the share of requests without a caller's traceparent to
// trace: a front starts a span for those alone (the SDK records every
// root it is given). It is 1 when the environment's sampler decides:
// every request then goes to it.
func (t *Tracing) RootShare() float64 {
	if t == nil {
		return 0
	}
	return t.share
}

// Tracer is what spans are started with; nil when tracing is off.
func (t *Tracing) Tracer() trace.Tracer {
	if t == nil {
		return nil
	}
	return t.tracer
}

// Shutdown exports what is queued (within ctx) and stops.
func (t *Tracing) Shutdown(ctx context.Context) error {
	if t == nil {
		return nil
	}
	return t.provider.Shutdown(ctx)
}

// exporter is the OTLP exporter for an endpoint and protocol. An HTTP
// endpoint without a path sends to /v1/traces, as the OTLP
// specification says of OTEL_EXPORTER_OTLP_ENDPOINT.
func exporter(ctx context.Context, endpoint, protocol string) (sdktrace.SpanExporter, error) {
	switch protocol {
	case HTTP:
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("OTLP endpoint %q: give a URL like http://collector:4318", endpoint)
		}
		if u.Path == "" || u.Path == "/" {
			u.Path = "/v1/traces"
		}
		return otlptracehttp.New(ctx, otlptracehttp.WithEndpointURL(u.String()))
	case GRPC:
		if !strings.Contains(endpoint, "://") {
			endpoint = "http://" + endpoint
		}
		u, err := url.Parse(endpoint)
		if err != nil || u.Host == "" || u.Scheme != "http" && u.Scheme != "https" {
			return nil, fmt.Errorf("OTLP endpoint %q: give host:port or a URL like http://collector:4317", endpoint)
		}
		return otlptracegrpc.New(ctx, otlptracegrpc.WithEndpointURL(u.String()))
	}
	return nil, fmt.Errorf("OTLP protocol %q: modelserve sends %s or %s", protocol, HTTP, GRPC)
}

func firstSet(v ...string) string {
	for _, s := range v {
		if s != "" {
			return s
		}
	}
	return ""
}
