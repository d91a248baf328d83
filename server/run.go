package server

import (
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/modelserve/modelserve/engine"
)

// Run answers HTTP on ln (and gRPC on grpcLn, unless nil) until ctx
// ends, with eng's models behind it: the server listens before the engine
// loads them (probes get an honest 503 meanwhile); when ctx ends it
// drains (new requests refused, those in progress finished, up to drain)
// and the engine unloads its models.
func (s *Server) Run(ctx context.Context, ln, grpcLn net.Listener, eng *engine.Engine, drain time.Duration) error {
	served := make(chan error, 2)
	go func() { served <- s.Serve(ln) }()
	s.cfg.Log.Info("listening", "addr", ln.Addr().String(), "routes", s.Routes())
	if grpcLn != nil {
		go func() { served <- s.ServeGRPC(grpcLn) }()
		s.cfg.Log.Info("listening for gRPC", "grpc_addr", grpcLn.Addr().String(), "service", "inference.GRPCInferenceService")
	}
	if err := eng.Start(ctx, s); err != nil {
		s.Shutdown(context.Background())
		return err
	}
	select {
	case <-ctx.Done():
		s.cfg.Log.Info("shutting down", "drain_timeout", drain.String())
	case err := <-served:
		return fmt.Errorf("server stopped: %w", err)
	}
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	return errors.Join(s.Shutdown(dctx), eng.Close(dctx))
}
