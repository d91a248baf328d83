package main

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/modelserve/modelserve/auth"
)

// serveDebug serves the profiler on its own listener, apart from the
// model's routes.
func serveDebug(addr string, log *slog.Logger, sec *security) (stop func(), err error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--debug-addr: %w", err)
	}
	if c := sec.tlsConfig(); c != nil {
		ln = tls.NewListener(ln, c)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// Profiles show the server's insides: the admin scope, when callers
	// authenticate.
	hs := &http.Server{Handler: sec.guardHTTP(auth.Need{Scope: auth.ScopeAdmin}, mux), ReadHeaderTimeout: 10 * time.Second}
	go hs.Serve(ln)
	log.Info("profiler", "addr", ln.Addr().String())
	return func() { hs.Close() }, nil
}
