package local

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelserve/modelserve/deploy/spec"
)

// replayLimit is the largest body the proxy keeps to send again when an
// instance fails before answering; larger bodies stream through once.
const replayLimit = 16 << 20

// backends gives the addresses of the instances ready for an endpoint now,
// and hears about one that failed.
type backends interface {
	ready(port int) []string
	failed(port int, addr string)
}

// endpointProxy is one endpoint's listener: it spreads requests (HTTP) or
// connections (TCP, and HTTPS, whose TLS passes through) over the ready
// instances in turn.
type endpointProxy struct {
	ep       spec.Endpoint
	ln       net.Listener
	backends backends
	log      *slog.Logger

	next     atomic.Uint64
	served   atomic.Int64
	inflight atomic.Int64
	draining atomic.Bool

	srv   *http.Server
	conns sync.WaitGroup
}

func newEndpointProxy(ep spec.Endpoint, addr string, b backends, log *slog.Logger) (*endpointProxy, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("endpoint %s: %w", ep.Name, err)
	}
	return &endpointProxy{ep: ep, ln: ln, backends: b, log: log}, nil
}

func (p *endpointProxy) addr() string { return p.ln.Addr().String() }

// pick returns the ready instances starting with the next in turn.
func (p *endpointProxy) pick() []string {
	ready := p.backends.ready(p.ep.Port)
	if len(ready) == 0 {
		return nil
	}
	n := int(p.next.Add(1) % uint64(len(ready)))
	return append(ready[n:], ready[:n]...)
}

func (p *endpointProxy) serve() {
	if p.ep.Protocol == spec.ProtocolHTTP {
		rp := &httputil.ReverseProxy{
			Rewrite:   func(r *httputil.ProxyRequest) { r.Out.URL.Scheme, r.Out.URL.Host = "http", "placeholder" },
			Transport: &spread{p: p, base: &http.Transport{MaxIdleConnsPerHost: 64, IdleConnTimeout: 30 * time.Second}},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				if errors.Is(err, errNoInstance) {
					w.Header().Set("Retry-After", "1")
					http.Error(w, fmt.Sprintf("endpoint %s: no instance is ready", p.ep.Name), http.StatusServiceUnavailable)
					return
				}
				p.log.Warn("proxy", "endpoint", p.ep.Name, "err", err)
				http.Error(w, fmt.Sprintf("endpoint %s: %v", p.ep.Name, err), http.StatusBadGateway)
			},
		}
		p.srv = &http.Server{Handler: p.handler(rp), ReadHeaderTimeout: 30 * time.Second}
		p.srv.Serve(p.ln)
		return
	}
	for {
		c, err := p.ln.Accept()
		if err != nil {
			return
		}
		p.conns.Add(1)
		go func() {
			defer p.conns.Done()
			p.pipe(c)
		}()
	}
}

// handler refuses new requests once draining, and keeps small bodies so a
// request can go to another instance when one fails before answering.
func (p *endpointProxy) handler(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.inflight.Add(1)
		defer p.inflight.Add(-1)
		if p.draining.Load() {
			w.Header().Set("Connection", "close")
			w.Header().Set("Retry-After", "5")
			http.Error(w, "the service is shutting down", http.StatusServiceUnavailable)
			return
		}
		p.served.Add(1)
		if r.Body != nil && r.Body != http.NoBody && r.ContentLength <= replayLimit {
			body, err := io.ReadAll(io.LimitReader(r.Body, replayLimit+1))
			if err != nil {
				http.Error(w, "reading the request: "+err.Error(), http.StatusBadRequest)
				return
			}
			if len(body) <= replayLimit {
				r.Body = io.NopCloser(bytes.NewReader(body))
				r.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(body)), nil }
				r.ContentLength = int64(len(body))
			} else {
				r.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), r.Body))
			}
		}
		next.ServeHTTP(w, r)
	})
}

var errNoInstance = errors.New("no instance is ready")

// spread sends a request to a ready instance; if that instance fails
// before answering (it crashed, or is restarting) and the body can be sent
// again, the next one gets it.
type spread struct {
	p    *endpointProxy
	base http.RoundTripper
}

func (s *spread) RoundTrip(req *http.Request) (*http.Response, error) {
	addrs := s.p.pick()
	if len(addrs) == 0 {
		return nil, errNoInstance
	}
	var last error
	for i, addr := range addrs {
		if i > 0 {
			if req.GetBody == nil {
				break
			}
			body, err := req.GetBody()
			if err != nil {
				break
			}
			req = req.Clone(req.Context())
			req.Body = body
		}
		req.URL.Host = addr
		req.Host = addr
		resp, err := s.base.RoundTrip(req)
		if err == nil {
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err
		}
		last = err
		s.p.backends.failed(s.p.ep.Port, addr)
	}
	return nil, last
}

// pipe joins a TCP connection to a ready instance.
func (p *endpointProxy) pipe(c net.Conn) {
	defer c.Close()
	var up net.Conn
	for _, addr := range p.pick() {
		var err error
		if up, err = net.DialTimeout("tcp", addr, 2*time.Second); err == nil {
			break
		}
		p.backends.failed(p.ep.Port, addr)
	}
	if up == nil {
		return
	}
	defer up.Close()
	p.served.Add(1)
	done := make(chan struct{}, 2)
	go func() { io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, up); done <- struct{}{} }()
	<-done
	<-done
}

// drain answers new requests 503 and waits for those in flight, up to ctx.
func (p *endpointProxy) drain(ctx context.Context) {
	p.draining.Store(true)
	if p.srv == nil { // TCP: no new connections; open ones finish
		p.ln.Close()
		done := make(chan struct{})
		go func() { p.conns.Wait(); close(done) }()
		select {
		case <-done:
		case <-ctx.Done():
		}
		return
	}
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for p.inflight.Load() > 0 {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (p *endpointProxy) close() {
	if p.srv != nil {
		p.srv.Close()
	}
	p.ln.Close()
}
