package server

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"go.opentelemetry.io/otel/trace"

	"golang.org/x/net/netutil"
	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	grpccreds "google.golang.org/grpc/credentials"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/reflection"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/modelserve/modelserve/auth"
	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/panics"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/oip"
	"github.com/modelserve/modelserve/registry"
)

// The Open Inference Protocol over gRPC (inference.GRPCInferenceService),
// on a listener of its own: the same models, admission queue, batches,
// metrics (protocol grpc) and auth policy as the HTTP routes. Health is
// also the standard grpc.health.v1 service, and the services are listed
// by reflection (grpcurl needs no proto file).

// grpcService answers the protocol's RPCs for s.
type grpcService struct {
	oip.UnimplementedGRPCInferenceServiceServer
	s *Server
}

// ServeGRPC answers gRPC on ln until Shutdown (or GracefulStop through
// it): TLS as the HTTP listener has it, the same auth policy.
func (s *Server) ServeGRPC(ln net.Listener) error {
	opts := []grpc.ServerOption{
		grpc.ChainUnaryInterceptor(s.grpcGuard),
		grpc.ChainStreamInterceptor(s.grpcStreamGuard),
		grpc.MaxRecvMsgSize(s.cfg.MaxBodyBytes),
		grpc.MaxSendMsgSize(max(s.cfg.MaxBodyBytes, 64<<20)),
		grpc.MaxConcurrentStreams(1024),
		grpc.ConnectionTimeout(s.cfg.Conn.HeaderTimeout),
	}
	if s.cfg.TLS != nil {
		opts = append(opts, grpc.Creds(grpccreds.NewTLS(s.cfg.TLS)))
	}
	// As many connections as the HTTP listener takes; gRPC's own
	// keepalive closes idle ones.
	ln = netutil.LimitListener(ln, s.cfg.Conn.MaxConnections)
	opts = append(opts, grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: s.cfg.Conn.IdleTimeout}))
	gs := grpc.NewServer(opts...)
	oip.RegisterGRPCInferenceServiceServer(gs, &grpcService{s: s})
	healthpb.RegisterHealthServer(gs, s.grpcHealth)
	reflection.Register(gs)
	s.mu.Lock()
	s.grpcServers = append(s.grpcServers, gs)
	s.mu.Unlock()
	s.setReady() // the health service's first status
	return gs.Serve(ln)
}

// grpcNeed is what a unary RPC needs of its caller: predict for the
// model it names, admin for the repository, nothing (probes) for health
// and readiness unless AuthHealth; any other, any principal.
func (s *Server) grpcNeed(req any) (auth.Need, bool) {
	switch r := req.(type) {
	case *oip.ModelInferRequest:
		return auth.Need{Scope: auth.ScopePredict, Model: r.GetModelName()}, false
	case *oip.ModelMetadataRequest:
		return auth.Need{Scope: auth.ScopePredict, Model: r.GetName()}, false
	case *oip.RepositoryIndexRequest, *oip.RepositoryModelLoadRequest, *oip.RepositoryModelUnloadRequest:
		return auth.Need{Scope: auth.ScopeAdmin}, false
	case *oip.ServerLiveRequest, *oip.ServerReadyRequest, *oip.ModelReadyRequest, *healthpb.HealthCheckRequest:
		return auth.Need{}, !s.cfg.AuthHealth
	}
	return auth.Need{}, false
}

// grpcGuard authorizes every unary RPC as the HTTP routes are, and turns
// a panic into an Internal status.
func (s *Server) grpcGuard(ctx context.Context, req any, info *grpc.UnaryServerInfo, next grpc.UnaryHandler) (resp any, err error) {
	defer func() {
		if v := recover(); v != nil {
			p := s.cfg.Panics.Recovered(panics.Handler, v)
			resp, err = nil, status.Error(codes.Internal, p.Error())
		}
	}()
	need, open := s.grpcNeed(req)
	if ctx, err = s.grpcAuthorize(ctx, need, open, info.FullMethod); err != nil {
		return nil, err
	}
	return next(ctx, req)
}

// grpcStreamGuard authorizes the streaming RPCs (reflection, the health
// service's Watch): health as a probe, reflection for any principal.
func (s *Server) grpcStreamGuard(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, next grpc.StreamHandler) error {
	open := strings.HasPrefix(info.FullMethod, "/grpc.health.v1.") && !s.cfg.AuthHealth
	if _, err := s.grpcAuthorize(ss.Context(), auth.Need{}, open, info.FullMethod); err != nil {
		return err
	}
	return next(srv, ss)
}

// grpcAuthorize checks an RPC's credentials against need (unless open or
// auth is off), and names its principal in the context it returns.
func (s *Server) grpcAuthorize(ctx context.Context, need auth.Need, open bool, method string) (context.Context, error) {
	if !s.cfg.Auth.Enabled() || open {
		return ctx, nil
	}
	pr, f := s.cfg.Auth.Check(grpcCredentials(ctx), need)
	if f != nil {
		s.cfg.Audit.Info("refused", "status", f.Status, "reason", f.Reason, "principal", pr.Name, "method", method)
		code := codes.Unauthenticated
		if f.Status == http.StatusForbidden {
			code = codes.PermissionDenied
		}
		return ctx, status.Error(code, f.Message)
	}
	return context.WithValue(ctx, principalKey{}, pr.Name), nil
}

// grpcCredentials gathers what an RPC brings: its authorization metadata,
// its peer's address and verified certificate.
func grpcCredentials(ctx context.Context) auth.Credentials {
	var cr auth.Credentials
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get("authorization"); len(v) > 0 {
			cr.Authorization = v[0]
		}
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
			cr.Remote = ap.Addr().Unmap()
		}
		if ti, ok := p.AuthInfo.(grpccreds.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.VerifiedChains[0]) > 0 {
			cr.Certificate = ti.State.VerifiedChains[0][0]
		}
	}
	return cr
}

func (g *grpcService) ServerLive(context.Context, *oip.ServerLiveRequest) (*oip.ServerLiveResponse, error) {
	return &oip.ServerLiveResponse{Live: true}, nil
}

func (g *grpcService) ServerReady(context.Context, *oip.ServerReadyRequest) (*oip.ServerReadyResponse, error) {
	return &oip.ServerReadyResponse{Ready: !g.s.draining.Load() && g.s.allReady()}, nil
}

// model finds the model an RPC names and checks the version it names.
func (g *grpcService) model(name, version string) (*served, *admitterRef, error) {
	m, ok := g.s.tab.Load().models[name]
	if !ok {
		return nil, nil, status.Errorf(codes.NotFound, "no model %q is served here", name)
	}
	ref := m.pred.Load()
	if version != "" && (ref == nil || ref.version != version) {
		return nil, nil, status.Errorf(codes.NotFound, "model %s has no version %q loaded here", name, version)
	}
	return m, ref, nil
}

func (g *grpcService) ModelReady(_ context.Context, r *oip.ModelReadyRequest) (*oip.ModelReadyResponse, error) {
	_, ref, err := g.model(r.GetName(), r.GetVersion())
	if err != nil {
		return nil, err
	}
	return &oip.ModelReadyResponse{Ready: ref != nil && !g.s.draining.Load()}, nil
}

func (g *grpcService) ServerMetadata(context.Context, *oip.ServerMetadataRequest) (*oip.ServerMetadataResponse, error) {
	return &oip.ServerMetadataResponse{Name: "modelserve", Version: g.s.cfg.Version, Extensions: g.s.oipExtensions()}, nil
}

func (g *grpcService) ModelMetadata(_ context.Context, r *oip.ModelMetadataRequest) (*oip.ModelMetadataResponse, error) {
	m, ref, err := g.model(r.GetName(), r.GetVersion())
	if err != nil {
		return nil, err
	}
	md := &oip.ModelMetadataResponse{Name: m.name, Platform: oipPlatform}
	if ref != nil {
		md.Versions = []string{ref.version}
	}
	tensor := func(s model.Spec) *oip.ModelMetadataResponse_TensorMetadata {
		return &oip.ModelMetadataResponse_TensorMetadata{Name: s.Name, Datatype: s.DType.OIP(), Shape: s.Shape}
	}
	for _, in := range m.sig.Inputs {
		md.Inputs = append(md.Inputs, tensor(in))
	}
	for _, name := range m.sig.FetchedOutputs() {
		out, _, _ := m.sig.Output(name)
		md.Outputs = append(md.Outputs, tensor(out))
	}
	return md, nil
}

// ModelInfer runs a request's tensors through the model's admission
// queue: raw inputs are answered with raw outputs, typed with typed.
func (g *grpcService) ModelInfer(ctx context.Context, r *oip.ModelInferRequest) (*oip.ModelInferResponse, error) {
	s := g.s
	s.active.Add(1)
	defer s.active.Add(-1)
	start := time.Now()
	m, _, err := g.model(r.GetModelName(), r.GetModelVersion())
	if err != nil {
		return nil, err
	}
	m.handlers.Add(1)
	defer m.handlers.Add(-1)
	rt, ok := s.tab.Load().grpc[m.name]
	if !ok || rt.m != m {
		return nil, status.Errorf(codes.NotFound, "no model %q is served here", m.name)
	}
	if s.cfg.Tracer != nil {
		md, _ := metadata.FromIncomingContext(ctx)
		ctx, _ = s.startSpan(ctx, metadataCarrier(md), rt, start)
	}
	resp, ans := g.infer(ctx, rt, r)
	elapsed := time.Since(start)
	s.count(ctx, rt, ans, elapsed)
	s.logAnswer(ctx, ans.log, ans, principalOf(ctx), gateway{}, elapsed)
	endSpan(trace.SpanFromContext(ctx), ans, gateway{}, "", start.Add(elapsed))
	if s.cfg.Auth.Enabled() {
		s.cfg.Audit.Info("request", traceAttrs(ctx, []any{"principal", principalOf(ctx), "model", rt.m.name, "version", ans.version, "function", rt.fn.Name,
			"protocol", rt.protocol, "rows", ans.rows, "status", ans.status, "ms", float64(elapsed.Microseconds()) / 1000})...)
	}
	if ans.status != http.StatusOK {
		return nil, grpcStatus(ans)
	}
	return resp, nil
}

func (g *grpcService) infer(ctx context.Context, rt *route, r *oip.ModelInferRequest) (resp *oip.ModelInferResponse, ans answer) {
	s := g.s
	rec := s.startRecord(rt)
	defer func() { ans.log = rec }()
	if s.draining.Load() {
		return nil, s.failure(errDraining, 0)
	}
	ref := rt.m.pred.Load()
	if ref == nil {
		return nil, s.failure(errNotReady, 0)
	}
	defer func() { ans.version = ref.version }()
	// The message is read already: admission sees its size as a body's.
	arrival := engine.Arrival{Bytes: int64(proto.Size(r)), Priority: s.cfg.DefaultPriority, Caller: grpcCaller(ctx)}
	ticket, err := ref.AdmitArrival(arrival)
	if rt.switched(err, &ref) {
		ticket, err = ref.AdmitArrival(arrival)
	}
	if err != nil {
		return nil, s.failure(err, 0)
	}
	defer ticket.Done()
	fetched := rt.fn.Outputs
	began := time.Now()
	req, err := grpcRequest(r, rt.m.sig, fetched)
	if err != nil {
		return nil, s.failure(err, 0)
	}
	decoded := since(began)
	keepInputs(rec, req.inputs, nil, true)
	ctx, cancel := context.WithTimeout(ctx, s.cfg.MaxRequestTimeout)
	defer cancel()
	outs, err := ticket.Run(ctx, req.inputs)
	if err != nil {
		return nil, s.failure(err, 0)
	}
	if rec != nil {
		rec.Outputs = outs
	}
	began = time.Now()
	resp = &oip.ModelInferResponse{ModelName: rt.m.name, ModelVersion: ref.version, Id: r.GetId()}
	which := req.asked(len(fetched))
	// FP16 has no typed contents: an answer holding one is all raw.
	raw := len(r.GetRawInputContents()) > 0
	for _, k := range which {
		raw = raw || outs[k].DType == model.Float16
	}
	for _, k := range which {
		t := outs[k]
		o := &oip.ModelInferResponse_InferOutputTensor{Name: fetched[k], Datatype: t.DType.OIP(), Shape: t.Shape}
		if raw {
			resp.RawOutputContents = append(resp.RawOutputContents, model.AppendBinary(nil, t))
		} else {
			o.Contents = toContents(t)
		}
		resp.Outputs = append(resp.Outputs, o)
	}
	// Encoding here is building the message; gRPC marshals it after.
	return resp, answer{status: http.StatusOK, rows: req.rows, stages: timed(decoded, ticket.Stages(), since(began))}
}

// grpcStatus is the gRPC status of a failed answer: the HTTP status's
// counterpart, an overload with the time to retry after.
func grpcStatus(ans answer) error {
	msg := ans.message
	code := codes.Internal
	switch ans.status {
	case http.StatusBadRequest:
		code = codes.InvalidArgument
	case http.StatusNotFound:
		code = codes.NotFound
	case http.StatusRequestEntityTooLarge:
		code = codes.ResourceExhausted
	case http.StatusTooManyRequests:
		st := status.New(codes.ResourceExhausted, msg)
		if ans.retryAfter > 0 {
			if d, err := st.WithDetails(&errdetails.RetryInfo{RetryDelay: durationpb.New(time.Duration(ans.retryAfter) * time.Second)}); err == nil {
				st = d
			}
		}
		return st.Err()
	case http.StatusServiceUnavailable:
		code = codes.Unavailable
	case http.StatusGatewayTimeout:
		code = codes.DeadlineExceeded
	}
	return status.Error(code, msg)
}

// principalOf is who an RPC comes from: "anonymous" without auth.
func principalOf(ctx context.Context) string {
	if name, ok := ctx.Value(principalKey{}).(string); ok {
		return name
	}
	return "anonymous"
}

// grpcCaller names an RPC's caller for admission's fair share.
func grpcCaller(ctx context.Context) string {
	if p := principalOf(ctx); p != "anonymous" {
		return p
	}
	if p, ok := peer.FromContext(ctx); ok {
		if ap, err := netip.ParseAddrPort(p.Addr.String()); err == nil {
			return "addr:" + ap.Addr().String()
		}
	}
	return "grpc"
}

// The model repository extension over gRPC: what the REST repository
// routes do, with the admin scope.

func (g *grpcService) repository() (Repository, error) {
	if g.s.cfg.Repository == nil {
		return nil, status.Error(codes.Unimplemented, "the model repository API is off: callers must authenticate (admin scope), or start the server with --model-control")
	}
	return g.s.cfg.Repository, nil
}

func (g *grpcService) RepositoryIndex(_ context.Context, r *oip.RepositoryIndexRequest) (*oip.RepositoryIndexResponse, error) {
	repo, err := g.repository()
	if err != nil {
		return nil, err
	}
	entries, err := repo.Index()
	if err != nil {
		return nil, status.Errorf(codes.Internal, "reading the registry: %v", err)
	}
	out := &oip.RepositoryIndexResponse{}
	for _, e := range entries {
		if r.GetReady() && e.State != engine.Ready {
			continue
		}
		out.Models = append(out.Models, &oip.RepositoryIndexResponse_ModelIndex{Name: e.Name, Version: e.Version, State: string(e.State), Reason: e.Reason})
	}
	return out, nil
}

func (g *grpcService) RepositoryModelLoad(ctx context.Context, r *oip.RepositoryModelLoadRequest) (*oip.RepositoryModelLoadResponse, error) {
	repo, err := g.repository()
	if err != nil {
		return nil, err
	}
	version := ""
	if p, ok := r.GetParameters()["version"]; ok {
		version = p.GetStringParam()
		if err := model.CheckName(model.VersionName, version); err != nil {
			return nil, status.Error(codes.InvalidArgument, err.Error())
		}
	}
	err = repo.Load(ctx, r.GetModelName(), version)
	g.s.cfg.Audit.Info("repository load", "model", r.GetModelName(), "principal", principalOf(ctx), "protocol", "grpc", "ok", err == nil)
	if err != nil {
		return nil, repositoryStatus("load", r.GetModelName(), err)
	}
	return &oip.RepositoryModelLoadResponse{}, nil
}

func (g *grpcService) RepositoryModelUnload(ctx context.Context, r *oip.RepositoryModelUnloadRequest) (*oip.RepositoryModelUnloadResponse, error) {
	repo, err := g.repository()
	if err != nil {
		return nil, err
	}
	err = repo.Unload(ctx, r.GetModelName())
	g.s.cfg.Audit.Info("repository unload", "model", r.GetModelName(), "principal", principalOf(ctx), "protocol", "grpc", "ok", err == nil)
	if err != nil {
		return nil, repositoryStatus("unload", r.GetModelName(), err)
	}
	return &oip.RepositoryModelUnloadResponse{}, nil
}

// repositoryStatus is a failed load's or unload's gRPC status.
func repositoryStatus(what, name string, err error) error {
	code := codes.InvalidArgument
	switch {
	case errors.Is(err, registry.ErrNotFound):
		code = codes.NotFound
	case errors.Is(err, engine.ErrNoRoom):
		code = codes.ResourceExhausted
	}
	return status.Errorf(code, "%s %s: %v", what, name, err)
}
