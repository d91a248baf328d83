package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/onnxrt"
	"github.com/modelserve/modelserve/registry"
	"github.com/modelserve/modelserve/server"
	"github.com/modelserve/modelserve/workers"
)

type serveOptions struct {
	model        string
	host         string
	port         int
	workers      int
	intraOp      int
	device       string
	maxQueue     int
	maxBodyBytes int
	drain        time.Duration
}

func newServeCmd(g *globals) *cobra.Command {
	o := &serveOptions{}
	cmd := &cobra.Command{
		Use:   "serve --model NAME[:VERSION]",
		Short: "Serve a registered model over HTTP",
		Long: `Serve a registered model over HTTP: POST /predict runs the default
function and POST /<function> each named one (underscores become hyphens),
in the SQL gateway's external-function format. GET /healthcheck (or /health)
answers 200 once every worker has loaded, and GET /metrics is for Prometheus.

Every flag can also be set as MODELSERVE_<FLAG>, e.g. MODELSERVE_WORKERS=4.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			return serve(cmd.Context(), g, o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model to serve, NAME[:VERSION] (default version: the latest)")
	f.StringVar(&o.host, "host", "0.0.0.0", "address to listen on")
	f.IntVar(&o.port, "port", 8080, "port to listen on")
	f.IntVar(&o.workers, "workers", 0, "workers, each with its own session (default: one per core on CPU, one per GPU)")
	f.IntVar(&o.intraOp, "intra-op-threads", 0, "threads per session (default: cores divided among the workers)")
	f.StringVar(&o.device, "device", "auto", "auto, cpu or cuda")
	f.IntVar(&o.maxQueue, "max-queue", admission.DefaultMaxQueued, "requests that may wait for a worker before new ones get 429")
	f.IntVar(&o.maxBodyBytes, "max-body-bytes", server.DefaultMaxBodyBytes, "largest request body accepted")
	f.DurationVar(&o.drain, "drain-timeout", 30*time.Second, "how long a shutdown waits for requests in progress")
	cmd.MarkFlagRequired("model")
	return cmd
}

func serve(ctx context.Context, g *globals, o *serveOptions, log *slog.Logger) error {
	device, err := workers.ParseDevice(o.device)
	if err != nil {
		return err
	}
	reg, v, err := g.version(o.model)
	if err != nil {
		return err
	}
	release, err := reg.Acquire(v)
	if err != nil {
		return err
	}
	defer release()
	log = log.With("model", v.Name, "version", v.Version)

	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	labelled := prometheus.WrapRegistererWith(prometheus.Labels{"model": v.Name, "version": v.Version}, metrics)

	srv, err := server.New(server.Config{
		Signature:    v.Signature,
		MaxBodyBytes: o.maxBodyBytes,
		Log:          log,
		Gatherer:     metrics,
		Registerer:   labelled,
	})
	if err != nil {
		return fmt.Errorf("serving %s: %w", v.Ref(), err)
	}
	// Listen before loading, so probes get an honest 503 meanwhile.
	addr := net.JoinHostPort(o.host, strconv.Itoa(o.port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "routes", srv.Routes())

	queue, pool, err := load(ctx, reg, v, o, device, log, labelled)
	if err != nil {
		srv.Shutdown(context.Background())
		return err
	}
	srv.SetPredictor(queue)
	log.Info("ready")

	select {
	case <-ctx.Done():
		log.Info("shutting down", "drain_timeout", o.drain.String())
	case err := <-served:
		queue.Close()
		pool.Close(context.Background())
		return fmt.Errorf("server stopped: %w", err)
	}
	srv.SetPredictor(nil)
	drainCtx, cancel := context.WithTimeout(context.Background(), o.drain)
	defer cancel()
	errs := []error{srv.Shutdown(drainCtx)}
	queue.Close()
	errs = append(errs, pool.Close(drainCtx))
	return errors.Join(errs...)
}

// load checks the model file against its checksum and starts the workers
// and the queue in front of them.
func load(ctx context.Context, reg *registry.Registry, v registry.Version, o *serveOptions, device workers.Device,
	log *slog.Logger, metrics prometheus.Registerer) (*admission.Queue, *workers.Pool, error) {
	start := time.Now()
	if err := reg.Verify(ctx, v); err != nil {
		return nil, nil, err
	}
	rt, err := onnxrt.Load("")
	if err != nil {
		return nil, nil, err
	}
	log.Info("ONNX Runtime loaded", "ort_version", rt.Version, "library", rt.LibraryPath)
	pool, err := workers.Start(ctx, rt, workers.Model{
		Path:    v.ModelPath(),
		Inputs:  v.Signature.Inputs,
		Outputs: v.Signature.FetchedOutputs(),
	}, workers.Config{Workers: o.workers, IntraOpThreads: o.intraOp, Device: device}, log, metrics)
	if err != nil {
		return nil, nil, fmt.Errorf("loading %s: %w", v.Ref(), err)
	}
	queue, err := admission.New(pool, admission.Config{MaxQueued: o.maxQueue}, metrics)
	if err != nil {
		pool.Close(ctx)
		return nil, nil, err
	}
	log.Info("model loaded", "seconds", time.Since(start).Seconds())
	return queue, pool, nil
}
