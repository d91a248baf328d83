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
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/model"
)

// Admitter is admission's queue in front of the workers: Admit claims room
// for a request before its body is parsed, and the ticket runs its decoded
// inputs (the signature's inputs) into outputs (FetchedOutputs).
type Admitter interface {
	Admit(bodyBytes int64) (*admission.Ticket, error)
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
}

// TimeoutHeader lets a caller set its request's deadline: seconds ("2.5")
// or a Go duration ("250ms").
const TimeoutHeader = "X-Request-Timeout"

// Defaults for Config.
const (
	DefaultMaxBodyBytes      = 64 << 20
	DefaultRequestTimeout    = time.Minute
	DefaultMaxRequestTimeout = 10 * time.Minute
)

// Server is modelserve's HTTP front: the external-function routes of one
// model, readiness and metrics.
type Server struct {
	cfg     Config
	app     *fiber.App
	routes  map[string]*route
	pred    atomic.Pointer[admitterRef]
	bufs    sync.Pool
	hangups *disconnects

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
	s := &Server{cfg: cfg, routes: map[string]*route{}, hangups: newDisconnects(50 * time.Millisecond)}
	if err := s.registerMetrics(); err != nil {
		return nil, err
	}
	s.app = fiber.New(fiber.Config{
		AppName:               "modelserve",
		BodyLimit:             cfg.MaxBodyBytes,
		DisableStartupMessage: true,
		ErrorHandler:          s.fiberError,
		IdleTimeout:           2 * time.Minute,
	})
	dec := newDecoder(cfg.Signature)
	fetched := cfg.Signature.FetchedOutputs()
	for _, fn := range cfg.Signature.Functions {
		r := &route{fn: fn, dec: dec, enc: newEncoder(fn, fetched)}
		s.routes[fn.Path()] = r
		s.app.Post(fn.Path(), s.predict(r))
	}
	if _, ok := s.routes["/predict"]; !ok {
		def := cfg.Signature.DefaultFunction()
		r := s.routes[def.Path()]
		s.routes["/predict"] = r
		s.app.Post("/predict", s.predict(r))
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
	return s.app.Listener(ln)
}

// Shutdown stops accepting connections and waits for requests in progress.
func (s *Server) Shutdown(ctx context.Context) error {
	defer s.hangups.close()
	return s.app.ShutdownWithContext(ctx)
}

// Routes lists the prediction routes and the function each runs.
func (s *Server) Routes() map[string]string {
	out := make(map[string]string, len(s.routes))
	for p, r := range s.routes {
		out[p] = r.fn.Name
	}
	return out
}

func (s *Server) predict(r *route) fiber.Handler {
	return func(c *fiber.Ctx) error {
		start := time.Now()
		rows, err := s.run(c, r)
		status := http.StatusOK
		if err != nil {
			status = s.writeError(c, err, r.fn.Name)
		}
		s.requests.WithLabelValues(r.fn.Name, outcome(status)).Inc()
		s.duration.WithLabelValues(r.fn.Name).Observe(time.Since(start).Seconds())
		if status == http.StatusOK {
			s.rows.WithLabelValues(r.fn.Name).Add(float64(rows))
		}
		return nil
	}
}

func (s *Server) run(c *fiber.Ctx, r *route) (int, error) {
	ref := s.pred.Load()
	if ref == nil {
		return 0, errNotReady
	}
	ctx, cancel, err := s.requestContext(c)
	if err != nil {
		return 0, err
	}
	defer cancel()
	// Admission sees the body's size before the body is parsed.
	ticket, err := ref.Admit(int64(len(c.Body())))
	if err != nil {
		return 0, err
	}
	defer ticket.Done()
	b, err := r.dec.decode(c.Body(), decodeOptions{nullAsNaN: r.fn.NullAsNaN})
	if err != nil {
		return 0, err
	}
	outs, err := ticket.Run(ctx, b.inputs)
	if err != nil {
		return 0, err
	}
	buf, _ := s.bufs.Get().(*[]byte)
	if buf == nil {
		buf = new([]byte)
	}
	*buf = r.enc.encode((*buf)[:0], b, outs)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Response().SetBody(*buf) // copies, so the buffer can be reused
	s.bufs.Put(buf)
	return len(b.rowIDs), nil
}

// requestContext gives the request its deadline and ends early if the
// caller hangs up.
func (s *Server) requestContext(c *fiber.Ctx) (context.Context, func(), error) {
	timeout := s.cfg.RequestTimeout
	if h := c.Get(TimeoutHeader); h != "" {
		d, err := parseTimeout(h)
		if err != nil {
			return nil, nil, &InputError{Row: -1, Msg: fmt.Sprintf("%s: %v", TimeoutHeader, err)}
		}
		timeout = min(d, s.cfg.MaxRequestTimeout)
	}
	ctx, cancel := context.WithTimeout(c.UserContext(), timeout)
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

// writeError is the one place an error becomes an HTTP status and body.
func (s *Server) writeError(c *fiber.Ctx, err error, function string) int {
	var in *InputError
	var rejected *admission.Rejection
	status, msg := http.StatusInternalServerError, "Prediction failed: "+err.Error()
	switch {
	case errors.As(err, &in):
		status, msg = http.StatusBadRequest, "Input data malformed: "+in.Error()
	case errors.As(err, &rejected):
		c.Set(ReasonHeader, rejected.Reason)
		s.cfg.Log.Debug("request refused", "function", function, "reason", rejected.Reason, "detail", rejected.Detail)
		if errors.Is(err, admission.ErrTooLarge) {
			status, msg = http.StatusRequestEntityTooLarge, "Request too large: "+rejected.Detail
			break
		}
		// The gateway slows down and retries on 429: the one signal for
		// "not now".
		status, msg = http.StatusTooManyRequests, "Too many requests"
		c.Set(fiber.HeaderRetryAfter, "1")
	case errors.Is(err, errNotReady), errors.Is(err, admission.ErrClosed):
		status, msg = http.StatusServiceUnavailable, "Service unavailable: "+err.Error()
		c.Set(fiber.HeaderRetryAfter, "1")
	case errors.Is(err, context.DeadlineExceeded):
		status, msg = http.StatusGatewayTimeout, "Prediction timed out: the request's deadline passed before it ran to the end"
	case errors.Is(err, context.Canceled):
		status, msg = http.StatusServiceUnavailable, "Request canceled"
	}
	if status >= 500 && status != http.StatusServiceUnavailable {
		s.cfg.Log.Warn("prediction failed", "function", function, "status", status, "error", err)
	}
	writeJSONError(c, status, msg)
	return status
}

func writeJSONError(c *fiber.Ctx, status int, msg string) {
	body := appendString([]byte(`{"error":`), msg)
	c.Status(status)
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Response().SetBody(append(body, '}'))
}

func outcome(status int) string {
	switch {
	case status == http.StatusOK:
		return "ok"
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
