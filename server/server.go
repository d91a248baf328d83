package server

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/http"
	"reflect"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"go.opentelemetry.io/otel/trace"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/valyala/fasthttp"
	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/modelserve/modelserve/auth"
	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/oip"
)

// Admitter is admission's queue in front of the workers: Admit claims room
// for a request before its body is parsed, and the ticket runs its decoded
// inputs (the signature's inputs) into outputs (FetchedOutputs). Estimate
// says how long rows would take, for deciding on async.
type Admitter interface {
	AdmitArrival(a engine.Arrival) (*engine.Ticket, error)
	Estimate(rows int) time.Duration
}

// Model is one model a server serves: its name, the first part of its
// routes (/iris/predict-proba) and what predict:NAME scopes match, and
// the signature of the version it serves.
type Model struct {
	Name      string
	Signature model.Signature
}

// Config describes the models a server serves and where it reports.
type Config struct {
	// Models are served each under /<name>/<function>; the default model
	// (DefaultModel, or the only one) also under /<function> and /predict.
	Models       []Model
	DefaultModel string
	// MaxBodyBytes bounds a request body, also once decompressed; larger
	// ones get 413. MaxInflateRatio refuses (413) a compressed body that
	// inflates past a megabyte and more than this many times its size.
	MaxBodyBytes    int
	MaxInflateRatio int
	Log             *slog.Logger
	// Gatherer is exposed on /metrics; Registerer takes the server's own
	// metrics, labelled by model and version (the version an Admitter
	// with a VersionName method names).
	Gatherer   prometheus.Gatherer
	Registerer prometheus.Registerer
	// RequestTimeout is a request's deadline unless its X-Request-Timeout
	// header asks for another, which MaxRequestTimeout caps.
	RequestTimeout    time.Duration
	MaxRequestTimeout time.Duration
	// Async says which gateway batches are answered 202 and polled.
	Async Async
	// ResultTTL is how long a gateway batch's answer is kept for retries
	// and polls (at least; memory permitting); ResultBytes bounds them.
	ResultTTL   time.Duration
	ResultBytes int64
	// ContentMD5 adds a Content-MD5 header to answers.
	ContentMD5 bool
	// Panics counts the panics the handlers recover; each fails its
	// request with 500 and the server goes on.
	Panics *panics.Recorder
	// Conn bounds what one connection may hold of the server.
	Conn ConnLimits
	// DefaultPriority is a request's priority when it sends no
	// X-Priority (the zero value is normal).
	DefaultPriority engine.Priority
	// Auth decides who may call; nil lets everyone in.
	Auth *auth.Policy
	// AuthHealth makes the probes need a credential too.
	AuthHealth bool
	// TLS, when set, serves HTTPS (and mutual TLS if it asks for client
	// certificates).
	TLS *tls.Config
	// Version is modelserve's, for the Open Inference Protocol's server
	// metadata.
	Version string
	// Repository, when set, answers the model repository API
	// (/v2/repository/...): load and unload models while serving (admin
	// scope, when callers authenticate).
	Repository Repository
	// Audit takes the line each request logs (who, what, how it ended);
	// a buffered logger keeps that from costing a write per request.
	// Nil logs them with Log.
	Audit *slog.Logger
	// InferenceLog, when set, keeps a sample of the requests answered.
	InferenceLog InferenceLog
	// Tracer, when set, traces requests (and their stages) whose trace is
	// sampled; a caller's traceparent and tracestate are honoured.
	// TraceRoots, when between 0 and 1, is the share of requests without
	// a traceparent that are traced: the others get no span at all, which
	// costs nothing, and the tracer decides for those it is given; 0
	// leaves every request to the tracer.
	Tracer     trace.Tracer
	TraceRoots float64
}

// ConnLimits bound what a connection can take from the server: a client
// that sends slowly or not at all is cut off, a flood of connections is
// refused. Zero fields take the defaults.
type ConnLimits struct {
	// HeaderTimeout is how long a client has to send a request's headers,
	// from the request's first byte (from connecting, for a connection's
	// first request); a later one gets 408.
	HeaderTimeout time.Duration
	// MinBodyRate is the slowest a request may arrive, in bytes a second,
	// once HeaderTimeout has passed since its first byte: a body trickled
	// slower is cut with 408.
	MinBodyRate int64
	// IdleTimeout closes a kept-alive connection with no request.
	IdleTimeout time.Duration
	// WriteTimeout bounds writing one answer to a client that reads slowly.
	WriteTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers (431 above).
	MaxHeaderBytes int
	// MaxConnections bounds the open connections; one more is answered 503
	// and closed.
	MaxConnections int
}

// Defaults for ConnLimits.
const (
	DefaultHeaderTimeout  = 10 * time.Second
	DefaultMinBodyRate    = 4 << 10
	DefaultIdleTimeout    = 2 * time.Minute
	DefaultWriteTimeout   = time.Minute
	DefaultMaxHeaderBytes = 16 << 10
	DefaultMaxConnections = 10_000
)

func (l *ConnLimits) defaults() {
	set := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	set(&l.HeaderTimeout, DefaultHeaderTimeout)
	set(&l.IdleTimeout, DefaultIdleTimeout)
	set(&l.WriteTimeout, DefaultWriteTimeout)
	if l.MinBodyRate <= 0 {
		l.MinBodyRate = DefaultMinBodyRate
	}
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxConnections <= 0 {
		l.MaxConnections = DefaultMaxConnections
	}
}

// allowance is how long a request may take to bring n bytes: the header
// timeout's grace, then the minimum rate.
func (l *ConnLimits) allowance(n int64) time.Duration {
	return l.HeaderTimeout + time.Duration(float64(n)/float64(l.MinBodyRate)*float64(time.Second))
}

// TimeoutHeader lets a caller set its request's deadline: seconds ("2.5")
// or a Go duration ("250ms").
const TimeoutHeader = "X-Request-Timeout"

// Defaults for Config.
const (
	DefaultMaxBodyBytes = 64 << 20
	// DefaultMaxInflateRatio is well above what real tables compress to
	// (numbers about 4×, a table of zeros with long column names about
	// 150×) and below what a bomb does (deflate reaches 1032×).
	DefaultMaxInflateRatio   = 256
	DefaultRequestTimeout    = time.Minute
	DefaultMaxRequestTimeout = 10 * time.Minute
	// DefaultResultTTL keeps answers as long as the gateway's protocol
	// asks: at least ten minutes.
	DefaultResultTTL   = 10 * time.Minute
	DefaultResultBytes = 256 << 20
)

// Server is modelserve's HTTP front: the external-function routes of one
// model, readiness and metrics.
type Server struct {
	cfg Config
	app *fiber.App
	// tab is the models served and their routes, replaced whole when a
	// model comes or goes (mu orders the writers): requests read it
	// without a lock.
	tab     atomic.Pointer[routeTable]
	mu      sync.Mutex
	bufs    buffers
	hangups *disconnects
	batches *batches
	// conns and active let Shutdown wait for requests in progress, then
	// close what keep-alive holds open.
	conns  *connTracker
	active atomic.Int64
	// draining turns new requests away while those in progress finish.
	draining atomic.Bool
	bodies   bodyPool
	// grpcServers are the gRPC listeners' servers, stopped by Shutdown;
	// grpcHealth their grpc.health.v1 service.
	grpcServers []*grpc.Server
	grpcHealth  *health.Server
	// decoders holds a slot per large body being decoded: one fewer
	// than the cores Go runs on, at least one (decode says why).
	decoders chan struct{}

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	stages   *prometheus.HistogramVec
	rows     *prometheus.CounterVec
	ready    prometheus.Gauge
}

// routeTable is the models a server serves and the routes that reach them.
type routeTable struct {
	routes map[string]*route
	models map[string]*served
	// infer and grpc are each model's Open Inference Protocol routes,
	// over REST and over gRPC.
	infer, grpc map[string]*route
}

// clone copies t's maps, for a writer to change.
func (t *routeTable) clone() *routeTable {
	return &routeTable{routes: maps.Clone(t.routes), models: maps.Clone(t.models), infer: maps.Clone(t.infer), grpc: maps.Clone(t.grpc)}
}

type admitterRef struct {
	Admitter
	version string
}

// served is one model: the admitter its requests go to, nil until it is
// loaded.
type served struct {
	name string
	sig  model.Signature
	pred atomic.Pointer[admitterRef]
	// handlers counts the requests on the model's routes being answered.
	handlers atomic.Int64
}

// versioned is an Admitter that names the version it runs, for metrics.
type versioned interface{ VersionName() string }

// route is one function of one model, with its decoder and encoder; key
// names it for the batch store (the same whichever path reached it).
type route struct {
	m   *served
	fn  model.Function
	key string
	dec *decoder
	enc *encoder
	// protocol labels the route's metrics: gateway, or oip for the Open
	// Inference Protocol's infer.
	protocol string
	// spanName names its requests' spans.
	spanName string
}

var (
	errNotReady = errors.New("the model is still loading")
	errDraining = errors.New("the server is shutting down; send the request to another instance")
)

// VersionHeader names the model version that computed an answer: during a
// switch, callers (and tests) see which one answered.
const VersionHeader = "X-Modelserve-Version"

// ReasonHeader names the limit a rejected request hit (queue_full, memory,
// deadline), for the caller's logs; the body stays the gateway's format.
const ReasonHeader = "X-Modelserve-Rejected"

// New builds the server; it answers 503 on its routes until SetPredictor.
func New(cfg Config) (*Server, error) {
	if len(cfg.Models) == 0 && cfg.Repository == nil {
		return nil, errors.New("a server needs a model to serve")
	}
	if cfg.DefaultModel == "" && len(cfg.Models) == 1 {
		cfg.DefaultModel = cfg.Models[0].Name
	}
	for _, m := range cfg.Models {
		if err := model.CheckName(model.ModelName, m.Name); err != nil {
			return nil, err
		}
		if err := m.Signature.Validate(); err != nil {
			return nil, fmt.Errorf("model %s: %w", m.Name, err)
		}
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxInflateRatio <= 0 {
		cfg.MaxInflateRatio = DefaultMaxInflateRatio
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Audit == nil {
		cfg.Audit = cfg.Log
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.MaxRequestTimeout <= 0 {
		cfg.MaxRequestTimeout = max(DefaultMaxRequestTimeout, cfg.RequestTimeout)
	}
	if cfg.ResultTTL <= 0 {
		cfg.ResultTTL = DefaultResultTTL
	}
	if cfg.ResultBytes <= 0 {
		cfg.ResultBytes = DefaultResultBytes
	}
	cfg.Conn.defaults()
	s := &Server{cfg: cfg, hangups: newDisconnects(50 * time.Millisecond), grpcHealth: health.NewServer(),
		decoders: make(chan struct{}, max(1, runtime.GOMAXPROCS(0)-1)),
		conns:    &connTracker{conns: map[net.Conn]*trackedConn{}, limits: cfg.Conn}}
	if err := s.registerMetrics(); err != nil {
		return nil, err
	}
	var err error
	if s.batches, err = newBatches(cfg.ResultTTL, cfg.ResultBytes, cfg.Registerer); err != nil {
		return nil, err
	}
	s.app = fiber.New(fiber.Config{
		AppName:               "modelserve",
		BodyLimit:             cfg.MaxBodyBytes,
		DisableStartupMessage: true,
		ErrorHandler:          s.fiberError,
		// fasthttp's read timeout runs from a request's first byte: the
		// headers must come within it. The body then gets the time its
		// length takes at the minimum rate, which each read also checks
		// (trackedConn), so a trickle is cut long before that.
		ReadTimeout:    cfg.Conn.HeaderTimeout,
		IdleTimeout:    cfg.Conn.IdleTimeout,
		WriteTimeout:   cfg.Conn.WriteTimeout,
		ReadBufferSize: cfg.Conn.MaxHeaderBytes,
		Concurrency:    cfg.Conn.MaxConnections,
		// Handlers read bodies themselves (body.go): admission refuses a
		// request from its headers, before its body is read.
		StreamRequestBody: true,
	})
	s.app.Server().HeaderReceived = func(h *fasthttp.RequestHeader) fasthttp.RequestConfig {
		n := int64(h.ContentLength())
		if n < 0 { // chunked: as long as the longest body
			n = int64(cfg.MaxBodyBytes)
		}
		return fasthttp.RequestConfig{ReadTimeout: cfg.Conn.allowance(n)}
	}
	s.app.Use(s.guard)
	s.app.Use(s.authorize)
	t := &routeTable{routes: map[string]*route{}, models: map[string]*served{}, infer: map[string]*route{}, grpc: map[string]*route{}}
	for _, m := range cfg.Models {
		if err := t.add(m, m.Name == cfg.DefaultModel); err != nil {
			return nil, err
		}
	}
	if _, ok := t.models[cfg.DefaultModel]; cfg.DefaultModel != "" && !ok {
		return nil, fmt.Errorf("the default model %s is not among those served", cfg.DefaultModel)
	}
	s.tab.Store(t)
	s.app.Get("/healthcheck", s.health)
	s.app.Get("/health", s.health)
	s.app.Get("/health/:model", s.modelHealth)
	s.app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
	s.addOIP()
	if cfg.Repository != nil {
		s.app.Post("/v2/repository/index", s.repositoryIndex)
		s.app.Post("/v2/repository/models/:model/load", s.repositoryLoad)
		s.app.Post("/v2/repository/models/:model/unload", s.repositoryUnload)
	}
	// The models' routes change while the server runs: one handler looks
	// each request's path up in the routeTable.
	s.app.Post("/*", s.dispatch)
	s.app.Get("/*", s.dispatch)
	s.app.Use(s.notFound)
	return s, nil
}

// dispatch runs the route a path names: POST predicts, GET polls a
// gateway batch.
func (s *Server) dispatch(c *fiber.Ctx) error {
	r, ok := s.tab.Load().routes[c.Path()]
	if !ok {
		return c.Next()
	}
	if c.Method() != fiber.MethodPost {
		return s.poll(c, r)
	}
	// Counted before the model is looked at again, so that Drop either
	// waits for this request or this request sees the model gone.
	r.m.handlers.Add(1)
	defer r.m.handlers.Add(-1)
	if s.tab.Load().models[r.m.name] != r.m {
		return c.Next()
	}
	return s.predict(c, r)
}

// Use points a model's requests at v from now on, adding the model's
// routes if it has none (the engine loads it at run time): v nil answers
// that it is not ready. A model whose signature changed gets new routes.
func (s *Server) Use(name string, sig model.Signature, v *engine.Version) error {
	s.mu.Lock()
	t := s.tab.Load()
	if m, ok := t.models[name]; !ok || !reflect.DeepEqual(m.sig, sig) {
		if err := sig.Validate(); err != nil {
			s.mu.Unlock()
			return fmt.Errorf("model %s: %w", name, err)
		}
		t = t.clone()
		t.remove(name)
		if err := t.add(Model{Name: name, Signature: sig}, name == s.cfg.DefaultModel); err != nil {
			s.mu.Unlock()
			return err
		}
		s.tab.Store(t)
	}
	s.mu.Unlock()
	if v == nil {
		return s.SetAdmitter(name, nil)
	}
	return s.SetAdmitter(name, v)
}

// Drop takes a model's routes away: its paths answer 404 from now on.
// It returns once the requests already past them have been answered (or
// ctx ends); a gateway batch answered 202 still holds its admission
// ticket, which the engine's drain waits for.
func (s *Server) Drop(ctx context.Context, name string) {
	s.mu.Lock()
	m := s.tab.Load().models[name]
	t := s.tab.Load().clone()
	t.remove(name)
	s.tab.Store(t)
	s.setReady()
	s.mu.Unlock()
	if m == nil {
		return
	}
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for m.handlers.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// add registers m's routes: /<model>/<function> and /<model>/predict,
// and, for the default model, /<function> and /predict.
func (t *routeTable) add(m Model, isDefault bool) error {
	if err := model.CheckName(model.ModelName, m.Name); err != nil {
		return err
	}
	if _, dup := t.models[m.Name]; dup {
		return fmt.Errorf("model %s is served twice", m.Name)
	}
	sm := &served{name: m.Name, sig: m.Signature}
	t.models[m.Name] = sm
	dec := newDecoder(m.Signature)
	fetched := m.Signature.FetchedOutputs()
	add := func(path string, r *route) {
		t.routes[path] = r
	}
	infer := model.Function{Name: "infer", Outputs: fetched}
	t.infer[m.Name] = &route{m: sm, fn: infer, key: "/v2/models/" + m.Name, protocol: "oip", spanName: spanName(http.MethodPost, "/v2/models/"+m.Name+"/infer")}
	t.grpc[m.Name] = &route{m: sm, fn: infer, key: "grpc:" + m.Name, protocol: "grpc", spanName: strings.TrimPrefix(oip.GRPCInferenceService_ModelInfer_FullMethodName, "/")}
	byFn := map[string]*route{}
	for _, fn := range m.Signature.Functions {
		r := &route{m: sm, fn: fn, key: "/" + m.Name + fn.Path(), dec: dec, enc: newEncoder(fn, fetched), protocol: "gateway",
			spanName: spanName(http.MethodPost, "/"+m.Name+fn.Path())}
		byFn[fn.Name] = r
		add("/"+m.Name+fn.Path(), r)
		if isDefault {
			add(fn.Path(), r)
		}
	}
	def := byFn[m.Signature.DefaultFunction().Name]
	if _, ok := t.routes["/"+m.Name+"/predict"]; !ok {
		add("/"+m.Name+"/predict", def)
	}
	if _, ok := t.routes["/predict"]; isDefault && !ok {
		add("/predict", def)
	}
	return nil
}

// remove takes a model and every route to it away.
func (t *routeTable) remove(name string) {
	m, ok := t.models[name]
	if !ok {
		return
	}
	delete(t.models, name)
	delete(t.infer, name)
	delete(t.grpc, name)
	for p, r := range t.routes {
		if r.m == m {
			delete(t.routes, p)
		}
	}
}

func (s *Server) registerMetrics() error {
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelserve_requests_total",
		Help: "Prediction requests answered, by model, version, function, protocol (gateway, oip) and outcome.",
	}, []string{"model", "version", "function", "protocol", "outcome"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "modelserve_request_duration_seconds",
		Help:    "Time from a prediction request's arrival to its answer.",
		Buckets: prometheus.ExponentialBuckets(100e-6, 2.5, 14),
	}, []string{"model", "version", "function", "protocol"})
	s.stages = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name: "modelserve_request_stage_seconds",
		Help: "Where a computed request's time went, by stage: decode (its body into tensors), queue (waiting for a worker), " +
			"execute (its first call's start to its last call's end) and encode (its answer).",
		Buckets: prometheus.ExponentialBuckets(25e-6, 2.5, 15),
	}, []string{"model", "version", "function", "protocol", "stage"})
	s.rows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelserve_rows_predicted_total",
		Help: "Rows answered with a prediction, by model, version, function and protocol.",
	}, []string{"model", "version", "function", "protocol"})
	s.ready = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modelserve_ready",
		Help: "1 once every model served has loaded, else 0.",
	})
	for _, c := range []prometheus.Collector{s.requests, s.duration, s.stages, s.rows, s.ready} {
		if err := s.cfg.Registerer.Register(c); err != nil {
			return fmt.Errorf("registering server metrics: %w", err)
		}
	}
	return nil
}

// SetAdmitter sends model's requests to a from now on: the model is
// loaded, or a new version of it takes over (requests already admitted
// finish on the one they started on). A nil a makes it not ready again.
// The server is ready once every model has an admitter.
func (s *Server) SetAdmitter(model string, a Admitter) error {
	m, ok := s.tab.Load().models[model]
	if !ok {
		return fmt.Errorf("model %s is not served here", model)
	}
	if a == nil {
		m.pred.Store(nil)
	} else {
		ref := &admitterRef{Admitter: a}
		if v, ok := a.(versioned); ok {
			ref.version = v.VersionName()
		}
		m.pred.Store(ref)
	}
	s.setReady()
	return nil
}

func (s *Server) setReady() {
	serving := healthpb.HealthCheckResponse_NOT_SERVING
	if s.allReady() && !s.draining.Load() {
		s.ready.Set(1)
		serving = healthpb.HealthCheckResponse_SERVING
	} else {
		s.ready.Set(0)
	}
	s.grpcHealth.SetServingStatus("", serving)
	s.grpcHealth.SetServingStatus(oip.GRPCInferenceService_ServiceDesc.ServiceName, serving)
}

func (s *Server) allReady() bool {
	for _, m := range s.tab.Load().models {
		if m.pred.Load() == nil {
			return false
		}
	}
	return true
}

// Test answers one request in process, without a socket (for tests).
func (s *Server) Test(req *http.Request) (*http.Response, error) {
	return s.app.Test(req, -1)
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	ln = s.conns.wrap(ln)
	if s.cfg.TLS != nil {
		// Above the tracked connections, so the pacing and limits count
		// the bytes on the wire, and fasthttp sees the TLS state.
		ln = tls.NewListener(ln, s.cfg.TLS)
	}
	return s.app.Listener(ln)
}

// Shutdown drains the server: from now on every new request is answered
// 503 at once (with Connection: close, so clients go elsewhere), while the
// requests already in progress, background gateway batches included, run
// to the end (or until ctx ends). Only then does it stop listening and
// close the connections clients keep alive: a drain must not wait for
// idle callers, nor refuse connections a load balancer still sends.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.hangups.close()
	defer s.batches.close()
	s.draining.Store(true)
	s.setReady()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for (s.active.Load() > 0 || s.batches.running.Load() > 0) && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	s.mu.Lock()
	grpcs := s.grpcServers
	s.mu.Unlock()
	for _, gs := range grpcs {
		gs.GracefulStop() // nothing runs on it any more
	}
	// fasthttp lets a connection finish the answer it is writing, then
	// closes it; the connections waiting for a next request are closed
	// here (and the rest once ctx ends): never one mid-answer.
	done := make(chan error, 1)
	go func() { done <- s.app.ShutdownWithContext(ctx) }()
	for {
		s.conns.closeIdle()
		select {
		case err := <-done:
			s.conns.closeAll()
			return err
		case <-tick.C:
		}
	}
}

// Routes lists the prediction routes and the function each runs.
func (s *Server) Routes() map[string]string {
	routes := s.tab.Load().routes
	out := make(map[string]string, len(routes))
	for p, r := range routes {
		out[p] = r.fn.Name
	}
	return out
}

func writeJSONError(c *fiber.Ctx, status int, msg string) {
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Response().SetBody(errorBody(msg))
}

func (s *Server) health(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	if s.draining.Load() {
		return c.Status(http.StatusServiceUnavailable).SendString(`{"status":"shutting down"}`)
	}
	if !s.allReady() {
		return c.Status(http.StatusServiceUnavailable).SendString(`{"status":"not ready"}`)
	}
	return c.SendString(`{"status":"ready"}`)
}

// modelHealth answers /health/<model>: that model's readiness alone.
func (s *Server) modelHealth(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	m, ok := s.tab.Load().models[c.Params("model")]
	switch {
	case !ok:
		writeJSONError(c, http.StatusNotFound, "no model "+strconv.Quote(c.Params("model"))+" is served here")
		return nil
	case s.draining.Load():
		return c.Status(http.StatusServiceUnavailable).SendString(`{"status":"shutting down"}`)
	case m.pred.Load() == nil:
		return c.Status(http.StatusServiceUnavailable).SendString(`{"status":"not ready"}`)
	}
	return c.SendString(`{"status":"ready"}`)
}

// notFound answers what no route took: an unknown function, or a function
// asked with the wrong method.
func (s *Server) notFound(c *fiber.Ctx) error {
	routes := s.tab.Load().routes
	if _, ok := routes[c.Path()]; ok {
		c.Set(fiber.HeaderAllow, fiber.MethodPost)
		writeJSONError(c, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes POST, not %s", c.Path(), c.Method()))
		return nil
	}
	if c.Method() == fiber.MethodPost {
		paths := make([]string, 0, len(routes))
		for p := range routes {
			paths = append(paths, p)
		}
		slices.Sort(paths)
		writeJSONError(c, http.StatusNotFound, fmt.Sprintf("unknown function %s; this server serves %s", c.Path(), strings.Join(paths, ", ")))
		return nil
	}
	writeJSONError(c, http.StatusNotFound, "not found: "+c.Method()+" "+c.Path())
	return nil
}

// fiberError answers errors fiber raises itself (a body over the limit).
func (s *Server) fiberError(c *fiber.Ctx, err error) error {
	status := http.StatusInternalServerError
	var fe *fiber.Error
	if errors.As(err, &fe) {
		status = fe.Code
	}
	msg := err.Error()
	switch status {
	case http.StatusRequestEntityTooLarge:
		msg = "the request body is larger than " + strconv.Itoa(s.cfg.MaxBodyBytes) + " bytes; send fewer rows per batch"
	case http.StatusRequestHeaderFieldsTooLarge:
		msg = "the request's headers are larger than " + strconv.Itoa(s.cfg.Conn.MaxHeaderBytes) + " bytes"
	case http.StatusRequestTimeout:
		msg = fmt.Sprintf("the request arrived too slowly: headers must come within %s, and the body at %d bytes a second or faster",
			s.cfg.Conn.HeaderTimeout, s.cfg.Conn.MinBodyRate)
	}
	writeJSONError(c, status, msg)
	return nil
}

// connTracker remembers the connections a listener accepted.
type connTracker struct {
	limits ConnLimits
	mu     sync.Mutex
	conns  map[net.Conn]*trackedConn
}

func (t *connTracker) wrap(ln net.Listener) net.Listener { return &trackedListener{Listener: ln, t: t} }

func (t *connTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Close()
	}
}

// closeIdle closes the connections waiting for a next request.
func (t *connTracker) closeIdle() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c, tc := range t.conns {
		if tc.idle.Load() {
			c.Close()
		}
	}
}

type trackedListener struct {
	net.Listener
	t *connTracker
}

func (l *trackedListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	tc := &trackedConn{Conn: c, t: l.t}
	l.t.mu.Lock()
	l.t.conns[c] = tc
	l.t.mu.Unlock()
	return tc, nil
}

// trackedConn forgets itself when closed; it keeps the socket reachable
// (SyscallConn) for the hang-up watcher. It also paces the requests it
// carries: from a request's first byte until its answer is written, every
// read must come by the time the bytes so far allow at the minimum rate,
// after HeaderTimeout's grace. fasthttp sets its own deadlines too (the
// headers', the idle one); the earlier of the two applies. One goroutine
// (the connection's) reads and writes, so the fields need no lock.
type trackedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once

	outer   time.Time // fasthttp's read deadline
	started time.Time // a request's first byte; zero between requests
	read    int64     // bytes read since
	paced   bool      // the socket's deadline is ours, not outer
	// idle: waiting for a request's first byte (a new connection, or one
	// whose last answer is written), so a drain may close it.
	idle atomic.Bool
}

func (c *trackedConn) Read(p []byte) (int, error) {
	if !c.started.IsZero() {
		due := c.started.Add(c.t.limits.allowance(c.read))
		if !c.outer.IsZero() && c.outer.Before(due) {
			due = c.outer
		}
		c.Conn.SetReadDeadline(due)
		c.paced = true
	}
	c.idle.Store(c.started.IsZero())
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.idle.Store(false)
		if c.started.IsZero() {
			c.started, c.read = time.Now(), 0
		}
		c.read += int64(n)
	}
	return n, err
}

// Write ends the request the connection carried: the answer is going out.
func (c *trackedConn) Write(p []byte) (int, error) {
	c.idle.Store(false)
	if !c.started.IsZero() {
		c.started = time.Time{}
		if c.paced {
			c.Conn.SetReadDeadline(c.outer)
			c.paced = false
		}
	}
	return c.Conn.Write(p)
}

func (c *trackedConn) SetReadDeadline(t time.Time) error {
	c.outer, c.paced = t, false
	return c.Conn.SetReadDeadline(t)
}

func (c *trackedConn) SetDeadline(t time.Time) error {
	c.outer, c.paced = t, false
	return c.Conn.SetDeadline(t)
}

func (c *trackedConn) Close() error {
	c.once.Do(func() {
		c.t.mu.Lock()
		delete(c.t.conns, c.Conn)
		c.t.mu.Unlock()
	})
	return c.Conn.Close()
}

func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	return sc.SyscallConn()
}
