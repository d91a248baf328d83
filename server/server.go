package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/model"
)

// Admitter is admission's queue in front of the workers: Admit claims room
// for a request before its body is parsed, and the ticket runs its decoded
// inputs (the signature's inputs) into outputs (FetchedOutputs). Estimate
// says how long rows would take, for deciding on async.
type Admitter interface {
	Admit(bodyBytes int64) (*admission.Ticket, error)
	Estimate(rows int) time.Duration
}

// Config describes the model a server serves and where it reports.
type Config struct {
	Signature model.Signature
	// MaxBodyBytes bounds a request body; larger ones get 413.
	MaxBodyBytes int
	Log          *slog.Logger
	// Gatherer is exposed on /metrics; Registerer takes the server's own
	// metrics (the caller labels them with the model and version).
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
}

// TimeoutHeader lets a caller set its request's deadline: seconds ("2.5")
// or a Go duration ("250ms").
const TimeoutHeader = "X-Request-Timeout"

// Defaults for Config.
const (
	DefaultMaxBodyBytes      = 64 << 20
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
	cfg     Config
	app     *fiber.App
	routes  map[string]*route
	pred    atomic.Pointer[admitterRef]
	bufs    buffers
	hangups *disconnects
	batches *batches
	// conns and active let Shutdown wait for requests in progress, then
	// close what keep-alive holds open.
	conns  *connTracker
	active atomic.Int64

	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	rows     *prometheus.CounterVec
	ready    prometheus.Gauge
}

type admitterRef struct{ Admitter }

// route is one function's path with its decoder and encoder.
type route struct {
	fn  model.Function
	dec *decoder
	enc *encoder
}

var errNotReady = errors.New("the model is still loading")

// ReasonHeader names the limit a rejected request hit (queue_full, memory,
// deadline), for the caller's logs; the body stays the gateway's format.
const ReasonHeader = "X-Modelserve-Rejected"

// New builds the server; it answers 503 on its routes until SetPredictor.
func New(cfg Config) (*Server, error) {
	if err := cfg.Signature.Validate(); err != nil {
		return nil, err
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.Log == nil {
		cfg.Log = slog.Default()
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
	s := &Server{cfg: cfg, routes: map[string]*route{}, hangups: newDisconnects(50 * time.Millisecond), conns: &connTracker{conns: map[net.Conn]struct{}{}}}
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
		IdleTimeout:           2 * time.Minute,
	})
	s.app.Use(s.guard)
	dec := newDecoder(cfg.Signature)
	fetched := cfg.Signature.FetchedOutputs()
	for _, fn := range cfg.Signature.Functions {
		r := &route{fn: fn, dec: dec, enc: newEncoder(fn, fetched)}
		s.routes[fn.Path()] = r
		s.app.Post(fn.Path(), s.predict(r))
		s.app.Get(fn.Path(), s.poll(r))
	}
	if _, ok := s.routes["/predict"]; !ok {
		def := cfg.Signature.DefaultFunction()
		r := s.routes[def.Path()]
		s.routes["/predict"] = r
		s.app.Post("/predict", s.predict(r))
		s.app.Get("/predict", s.poll(r))
	}
	s.app.Get("/healthcheck", s.health)
	s.app.Get("/health", s.health)
	s.app.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(cfg.Gatherer, promhttp.HandlerOpts{})))
	s.app.Use(s.notFound)
	return s, nil
}

func (s *Server) registerMetrics() error {
	s.requests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelserve_requests_total",
		Help: "Prediction requests answered, by function and outcome.",
	}, []string{"function", "outcome"})
	s.duration = prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "modelserve_request_duration_seconds",
		Help:    "Time from a prediction request's arrival to its answer.",
		Buckets: prometheus.ExponentialBuckets(100e-6, 2.5, 14),
	}, []string{"function"})
	s.rows = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelserve_rows_predicted_total",
		Help: "Rows answered with a prediction, by function.",
	}, []string{"function"})
	s.ready = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modelserve_ready",
		Help: "1 once every worker has loaded the model, else 0.",
	})
	for _, c := range []prometheus.Collector{s.requests, s.duration, s.rows, s.ready} {
		if err := s.cfg.Registerer.Register(c); err != nil {
			return fmt.Errorf("registering server metrics: %w", err)
		}
	}
	return nil
}

// SetAdmitter makes the server ready: the model is loaded and requests go
// to a. A nil a makes it not ready again.
func (s *Server) SetAdmitter(a Admitter) {
	if a == nil {
		s.pred.Store(nil)
		s.ready.Set(0)
		return
	}
	s.pred.Store(&admitterRef{a})
	s.ready.Set(1)
}

// Test answers one request in process, without a socket (for tests).
func (s *Server) Test(req *http.Request) (*http.Response, error) {
	return s.app.Test(req, -1)
}

// Serve answers requests on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.app.Listener(s.conns.wrap(ln))
}

// Shutdown stops accepting connections, waits for the requests in
// progress (or ctx), then closes the connections clients keep alive: a
// drain must not wait for idle callers.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.hangups.close()
	defer s.batches.close()
	done := make(chan error, 1)
	go func() { done <- s.app.ShutdownWithContext(ctx) }()
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for s.active.Load() > 0 && ctx.Err() == nil {
		select {
		case <-tick.C:
		case <-ctx.Done():
		}
	}
	s.conns.closeAll()
	return <-done
}

// Routes lists the prediction routes and the function each runs.
func (s *Server) Routes() map[string]string {
	out := make(map[string]string, len(s.routes))
	for p, r := range s.routes {
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
	if s.pred.Load() == nil {
		return c.Status(http.StatusServiceUnavailable).SendString(`{"status":"not ready"}`)
	}
	return c.SendString(`{"status":"ready"}`)
}

// notFound answers what no route took: an unknown function, or a function
// asked with the wrong method.
func (s *Server) notFound(c *fiber.Ctx) error {
	if _, ok := s.routes[c.Path()]; ok {
		c.Set(fiber.HeaderAllow, fiber.MethodPost)
		writeJSONError(c, http.StatusMethodNotAllowed, fmt.Sprintf("%s takes POST, not %s", c.Path(), c.Method()))
		return nil
	}
	if c.Method() == fiber.MethodPost {
		paths := make([]string, 0, len(s.routes))
		for _, fn := range s.cfg.Signature.Functions {
			paths = append(paths, fn.Path())
		}
		writeJSONError(c, http.StatusNotFound, fmt.Sprintf("unknown function %s; this model serves %s", c.Path(), strings.Join(paths, ", ")))
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
	if status == http.StatusRequestEntityTooLarge {
		msg = "the request body is larger than " + strconv.Itoa(s.cfg.MaxBodyBytes) + " bytes; send fewer rows per batch"
	}
	writeJSONError(c, status, msg)
	return nil
}

// connTracker remembers the connections a listener accepted.
type connTracker struct {
	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func (t *connTracker) wrap(ln net.Listener) net.Listener { return &trackedListener{Listener: ln, t: t} }

func (t *connTracker) closeAll() {
	t.mu.Lock()
	defer t.mu.Unlock()
	for c := range t.conns {
		c.Close()
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
	l.t.mu.Lock()
	l.t.conns[c] = struct{}{}
	l.t.mu.Unlock()
	return &trackedConn{Conn: c, t: l.t}, nil
}

// trackedConn forgets itself when closed; it keeps the socket reachable
// (SyscallConn) for the hang-up watcher.
type trackedConn struct {
	net.Conn
	t    *connTracker
	once sync.Once
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
