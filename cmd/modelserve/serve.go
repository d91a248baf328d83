package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"time"

	"github.com/modelserve/modelserve/tracing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/registry"
	"github.com/modelserve/modelserve/server"
)

func newServeCmd(g *globals) *cobra.Command {
	var o *serveOptions
	cmd := &cobra.Command{
		Use:   "serve --model NAME[:VERSION] [--model ...] | --all",
		Short: "Serve registered models over HTTP",
		Long: `Serve registered models over HTTP, in the SQL gateway's external-function
format: POST /<model>/<function> runs a model's function (underscores become
hyphens) and /<model>/predict its default one; the default model (the only
one served, or --default-model) also answers POST /predict and /<function>.
GET /healthcheck (or /health) answers 200 once every model has loaded,
/health/<model> for one model, and GET /metrics is for Prometheus.

Admission keeps the queue short and memory bounded: a request that does not
fit is answered 429 at once. Concurrent requests share ONNX Runtime calls of
up to --max-batch-rows rows; larger ones are split across workers.
--max-batch-rows and --max-batch-delay default to the version's registry
settings (registry set), then to 64 rows and auto.

Every flag can also be set as MODELSERVE_<FLAG>, e.g. MODELSERVE_WORKERS=4.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := g.logger()
			if err != nil {
				return err
			}
			return serve(cmd, g, o, log)
		},
	}
	o = newServeOptions(cmd.Flags())
	return cmd
}

func serve(cmd *cobra.Command, g *globals, o *serveOptions, log *slog.Logger) error {
	ctx := cmd.Context()
	eo, err := o.engine(cmd.Flags())
	if err != nil {
		return err
	}
	async, err := server.ParseAsync(o.async)
	if err != nil {
		return err
	}
	reg, err := registry.Open(g.registry, nil)
	if err != nil {
		return err
	}
	metrics := prometheus.NewRegistry()
	metrics.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	recorder, err := panics.New(metrics)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(o.host, strconv.Itoa(o.port))
	sec, err := o.sec.setup(metrics, log, addr)
	if err != nil {
		return err
	}
	sec.keepFresh(ctx, log)
	prio, err := engine.ParsePriority(o.defaultPriority)
	if err != nil {
		return fmt.Errorf("--default-priority: %w", err)
	}
	audit, closeAudit, err := g.auditLogger()
	if err != nil {
		return err
	}
	defer closeAudit()
	tr, err := tracing.Start(ctx, o.tracing(cmd.Flags(), metrics, log))
	if err != nil {
		return fmt.Errorf("tracing: %w", err)
	}
	if tr != nil {
		log.Info("tracing", "endpoint", tr.Endpoint, "protocol", tr.Protocol, "sample", o.traceSample)
		defer func() {
			// What is queued gets a few seconds to reach the collector.
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			tr.Shutdown(ctx)
		}()
	}
	ilog, err := o.openInferenceLog(metrics, log)
	if err != nil {
		return err
	}
	if ilog != nil {
		log.Info("inference log", "dir", o.inferenceLog, "sample", o.inferenceLogSample, "errors", o.inferenceLogErrors)
		defer func() {
			// What is queued is written and the last file closed whole.
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := ilog.Close(ctx); err != nil {
				log.Error("inference log", "error", err)
			}
		}()
	}
	env := engine.Env{Log: log, Metrics: metrics, Panics: recorder, Tracer: tr.Tracer()}
	eng, err := engine.New(reg, eo, engine.Config{FollowInterval: o.followInterval, Drain: o.drain,
		ModelMemory: int64(o.modelMemory), MaxLoaded: o.maxLoaded, EvictIdle: o.evictIdle}, env)
	if err != nil {
		return err
	}
	defer eng.Close(context.Background())
	models, err := eng.Prepare(o.models, o.all)
	if err != nil {
		return err
	}
	cfg := server.Config{
		Version:           version,
		DefaultModel:      o.defaultModel,
		Audit:             audit,
		DefaultPriority:   prio,
		Auth:              sec.policy,
		AuthHealth:        o.sec.authHealth,
		TLS:               sec.tlsConfig(),
		MaxBodyBytes:      int(o.maxBodyBytes),
		MaxInflateRatio:   o.inflateRatio,
		Log:               log,
		Gatherer:          metrics,
		Registerer:        metrics,
		RequestTimeout:    o.requestTimeout,
		MaxRequestTimeout: o.maxRequestTimeout,
		Async:             async,
		ResultTTL:         o.resultTTL,
		ResultBytes:       int64(o.resultMemory),
		ContentMD5:        o.contentMD5,
		Panics:            recorder,
		Tracer:            tr.Tracer(),
		TraceRoots:        tr.RootShare(),
		Conn: server.ConnLimits{HeaderTimeout: o.headerTimeout, MinBodyRate: int64(o.minBodyRate), IdleTimeout: o.idleTimeout,
			WriteTimeout: o.writeTimeout, MaxHeaderBytes: int(o.maxHeaderBytes), MaxConnections: o.maxConnections},
	}
	if ilog != nil {
		cfg.InferenceLog = ilog
	}
	for _, m := range models {
		cfg.Models = append(cfg.Models, server.Model{Name: m.Name, Signature: m.Version().Signature})
	}
	// Loading and unloading models is an admin's: open to anyone only
	// when asked for.
	if sec.policy.Enabled() || o.modelControl {
		cfg.Repository = eng
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("listening on %s: %w", addr, err)
	}
	if o.debugAddr != "" {
		stopDebug, err := serveDebug(o.debugAddr, log, sec)
		if err != nil {
			ln.Close()
			return err
		}
		defer stopDebug()
	}
	var grpcLn net.Listener
	if o.grpcPort >= 0 {
		grpcAddr := net.JoinHostPort(o.host, strconv.Itoa(o.grpcPort))
		if grpcLn, err = net.Listen("tcp", grpcAddr); err != nil {
			ln.Close()
			return fmt.Errorf("listening for gRPC on %s: %w", grpcAddr, err)
		}
	}
	return srv.Run(ctx, ln, grpcLn, eng, o.drain)
}
