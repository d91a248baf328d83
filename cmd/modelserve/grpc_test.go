package main

import (
	"context"
	le "encoding/binary"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	reflectionpb "google.golang.org/grpc/reflection/grpc_reflection_v1"
	"google.golang.org/grpc/status"

	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/oip"
)

var grpcAddrRE = regexp.MustCompile(`grpc_addr=(\S+)`)

// grpcClient dials a server's gRPC listener with a client generated from
// oip/inference.proto.
func grpcClient(t *testing.T, s *service) (oip.GRPCInferenceServiceClient, *grpc.ClientConn) {
	t.Helper()
	waitLog(t, s, "listening for gRPC")
	m := grpcAddrRE.FindStringSubmatch(s.logs.String())
	if m == nil {
		t.Fatalf("no gRPC address in the log:\n%s", s.logs)
	}
	conn, err := grpc.NewClient(m[1], grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return oip.NewGRPCInferenceServiceClient(conn), conn
}

func TestServe_openInferenceProtocolOverGRPC(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	for _, m := range []string{"strings", "types"} {
		c.must("registry", "log", "--name", m, "--version", "1", "--file", testenv.Model(t, m))
	}
	s := c.serve("--model", "iris", "--model", "strings", "--model", "types", "--workers", "1", "--grpc-port", "0")
	s.waitReady()
	cl, conn := grpcClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	if r, err := cl.ServerLive(ctx, &oip.ServerLiveRequest{}); err != nil || !r.GetLive() {
		t.Errorf("ServerLive = %v, %v", r, err)
	}
	if r, err := cl.ServerReady(ctx, &oip.ServerReadyRequest{}); err != nil || !r.GetReady() {
		t.Errorf("ServerReady = %v, %v", r, err)
	}
	if r, err := cl.ModelReady(ctx, &oip.ModelReadyRequest{Name: "iris", Version: "1"}); err != nil || !r.GetReady() {
		t.Errorf("ModelReady = %v, %v", r, err)
	}
	if _, err := cl.ModelReady(ctx, &oip.ModelReadyRequest{Name: "dlrm"}); status.Code(err) != codes.NotFound {
		t.Errorf("ModelReady of a model not served = %v, want NotFound", err)
	}
	if r, err := cl.ServerMetadata(ctx, &oip.ServerMetadataRequest{}); err != nil || r.GetName() != "modelserve" || !slices.Contains(r.GetExtensions(), "binary_tensor_data") {
		t.Errorf("ServerMetadata = %v, %v", r, err)
	}
	md, err := cl.ModelMetadata(ctx, &oip.ModelMetadataRequest{Name: "types"})
	if err != nil || md.GetPlatform() != "onnx_onnxv1" || len(md.GetInputs()) != 4 || md.GetInputs()[1].GetDatatype() != "UINT8" || !slices.Equal(md.GetInputs()[1].GetShape(), []int64{-1}) {
		t.Errorf("ModelMetadata = %v, %v", md, err)
	}
	if h, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{Service: "inference.GRPCInferenceService"}); err != nil || h.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Errorf("grpc.health.v1 Check = %v, %v", h, err)
	}

	// Typed contents in, typed out, every datatype of the types model.
	r, err := cl.ModelInfer(ctx, &oip.ModelInferRequest{ModelName: "types", Id: "t1",
		Inputs: []*oip.ModelInferRequest_InferInputTensor{
			{Name: "i32", Datatype: "INT32", Shape: []int64{2}, Contents: &oip.InferTensorContents{IntContents: []int32{-7, 2}}},
			{Name: "u8", Datatype: "UINT8", Shape: []int64{2}, Contents: &oip.InferTensorContents{UintContents: []uint32{200, 1}}},
			{Name: "f64", Datatype: "FP64", Shape: []int64{2}, Contents: &oip.InferTensorContents{Fp64Contents: []float64{0.25, 1}}},
			{Name: "flag", Datatype: "BOOL", Shape: []int64{2}, Contents: &oip.InferTensorContents{BoolContents: []bool{true, false}}},
		}})
	if err != nil {
		t.Fatal(err)
	}
	if r.GetId() != "t1" || r.GetModelVersion() != "1" || len(r.GetOutputs()) != 3 ||
		!slices.Equal(r.GetOutputs()[0].GetContents().GetFp64Contents(), []float64{193.25, 4}) ||
		!slices.Equal(r.GetOutputs()[1].GetContents().GetBoolContents(), []bool{false, true}) ||
		!slices.Equal(r.GetOutputs()[2].GetContents().GetInt64Contents(), []int64{-14, 4}) {
		t.Errorf("ModelInfer typed = %v", r)
	}

	// Raw contents in, raw out: BYTES length-prefixed and FP32.
	var color, amount []byte
	for _, v := range []string{"RED", "Blue"} {
		color = le.LittleEndian.AppendUint32(color, uint32(len(v)))
		color = append(color, v...)
	}
	for _, f := range []float32{2.5, 1} {
		amount = le.LittleEndian.AppendUint32(amount, math.Float32bits(f))
	}
	r, err = cl.ModelInfer(ctx, &oip.ModelInferRequest{ModelName: "strings",
		Inputs: []*oip.ModelInferRequest_InferInputTensor{
			{Name: "color", Datatype: "BYTES", Shape: []int64{2}}, {Name: "amount", Datatype: "FP32", Shape: []int64{2}},
		},
		Outputs:          []*oip.ModelInferRequest_InferRequestedOutputTensor{{Name: "code"}, {Name: "normalized"}},
		RawInputContents: [][]byte{color, amount}})
	if err != nil {
		t.Fatal(err)
	}
	raw := r.GetRawOutputContents()
	wantNorm := append(append(le.LittleEndian.AppendUint32(nil, 3), "red"...), append(le.LittleEndian.AppendUint32(nil, 4), "blue"...)...)
	if len(raw) != 2 || len(raw[0]) != 16 || le.LittleEndian.Uint64(raw[0]) != 1 || le.LittleEndian.Uint64(raw[0][8:]) != 3 || string(raw[1]) != string(wantNorm) {
		t.Errorf("ModelInfer raw = %v", r)
	}

	// The caller's mistakes and the model's absence, as gRPC codes.
	for _, tt := range []struct {
		req  *oip.ModelInferRequest
		code codes.Code
	}{
		{&oip.ModelInferRequest{ModelName: "iris", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP64", Shape: []int64{1, 4}}}}, codes.InvalidArgument},
		{&oip.ModelInferRequest{ModelName: "iris", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, 4},
			Contents: &oip.InferTensorContents{Fp32Contents: []float32{1, 2, 3}}}}}, codes.InvalidArgument},
		{&oip.ModelInferRequest{ModelName: "iris", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1 << 40, 4}}}}, codes.InvalidArgument},
		{&oip.ModelInferRequest{ModelName: "dlrm"}, codes.NotFound},
		{&oip.ModelInferRequest{ModelName: "iris", ModelVersion: "9"}, codes.NotFound},
	} {
		if _, err := cl.ModelInfer(ctx, tt.req); status.Code(err) != tt.code {
			t.Errorf("ModelInfer %v = %v, want %v", tt.req, err, tt.code)
		}
	}
	// A deadline too short for any answer is the caller's deadline.
	short, cancelShort := context.WithTimeout(ctx, time.Nanosecond)
	defer cancelShort()
	if _, err := cl.ModelInfer(short, &oip.ModelInferRequest{ModelName: "iris"}); status.Code(err) != codes.DeadlineExceeded {
		t.Errorf("ModelInfer past its deadline = %v", err)
	}
	if _, err := cl.RepositoryIndex(ctx, &oip.RepositoryIndexRequest{}); status.Code(err) != codes.Unimplemented {
		t.Errorf("RepositoryIndex without auth or --model-control = %v, want Unimplemented", err)
	}
	if _, m := s.get("/metrics"); !regexp.MustCompile(`modelserve_requests_total\{function="infer",model="types",outcome="ok",protocol="grpc",version="1"\} 1`).MatchString(m) {
		t.Errorf("gRPC requests are not counted under protocol grpc")
	}
}

func TestServe_gRPCSharesAuthAndAdmission(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	tokens := filepath.Join(t.TempDir(), "tokens")
	if err := os.WriteFile(tokens, []byte("gw predict:iris iris-token-0123456789\nother predict:dlrm dlrm-token-0123456789\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// One worker and one request queued at most: a flood is refused.
	s := c.serve("--model", "iris", "--workers", "1", "--grpc-port", "0", "--auth-tokens", tokens, "--max-queue", "1")
	s.waitReady()
	cl, conn := grpcClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req := &oip.ModelInferRequest{ModelName: "iris", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &oip.InferTensorContents{Fp32Contents: []float32{5.1, 3.5, 1.4, 0.2}}}}}
	with := func(token string) context.Context {
		return metadata.AppendToOutgoingContext(ctx, "authorization", "Bearer "+token)
	}
	if _, err := cl.ModelInfer(ctx, req); status.Code(err) != codes.Unauthenticated {
		t.Errorf("no token = %v, want Unauthenticated", err)
	}
	if _, err := cl.ModelInfer(with("dlrm-token-0123456789"), req); status.Code(err) != codes.PermissionDenied {
		t.Errorf("another model's token = %v, want PermissionDenied", err)
	}
	if _, err := cl.ModelInfer(with("iris-token-0123456789"), req); err != nil {
		t.Errorf("this model's token = %v", err)
	}
	if _, err := healthpb.NewHealthClient(conn).Check(ctx, &healthpb.HealthCheckRequest{}); err != nil {
		t.Errorf("health needs no token: %v", err)
	}
	// Reflection, a streaming RPC, needs a credential as the unary ones do.
	list := func(ctx context.Context) error {
		st, err := reflectionpb.NewServerReflectionClient(conn).ServerReflectionInfo(ctx)
		if err != nil {
			return err
		}
		// A stream the server refused ends Send with io.EOF; its status
		// comes from Recv.
		if err := st.Send(&reflectionpb.ServerReflectionRequest{MessageRequest: &reflectionpb.ServerReflectionRequest_ListServices{}}); err != nil && err != io.EOF {
			return err
		}
		_, err = st.Recv()
		return err
	}
	if err := list(ctx); status.Code(err) != codes.Unauthenticated {
		t.Errorf("reflection without a token = %v, want Unauthenticated", err)
	}
	if err := list(with("iris-token-0123456789")); err != nil {
		t.Errorf("reflection with a token = %v", err)
	}

	// A flood: every answer OK or RESOURCE_EXHAUSTED with a retry delay.
	big := &oip.ModelInferRequest{ModelName: "iris", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{4096, 4},
		Contents: &oip.InferTensorContents{Fp32Contents: make([]float32, 4*4096)}}}}
	var mu sync.Mutex
	got := map[codes.Code]int{}
	retry := 0
	var wg sync.WaitGroup
	for range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 5 {
				_, err := cl.ModelInfer(with("iris-token-0123456789"), big)
				st := status.Convert(err)
				mu.Lock()
				got[st.Code()]++
				for _, d := range st.Details() {
					if ri, ok := d.(*errdetails.RetryInfo); ok && ri.GetRetryDelay().AsDuration() >= time.Second {
						retry++
					}
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got[codes.OK] == 0 || got[codes.ResourceExhausted] == 0 || got[codes.OK]+got[codes.ResourceExhausted] != 160 || retry != got[codes.ResourceExhausted] {
		t.Errorf("a flood through gRPC: %v, %d with a retry delay; want only OK and RESOURCE_EXHAUSTED with RetryInfo", got, retry)
	}
}

// TestServe_grpcurlCallsEveryRPC: grpcurl (a tool of this module: go tool
// grpcurl) calls every RPC of the real server, by reflection and by the
// proto file.
func TestServe_grpcurlCallsEveryRPC(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris", "--workers", "1", "--grpc-port", "0", "--model-control")
	s.waitReady()
	waitLog(t, s, "listening for gRPC")
	addr := grpcAddrRE.FindStringSubmatch(s.logs.String())[1]
	grpcurl := func(args ...string) string {
		t.Helper()
		cmd := exec.Command("go", append([]string{"tool", "grpcurl", "-plaintext"}, args...)...)
		cmd.Dir = "../.." // the module's root, where go.mod names the tool
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("grpcurl %v: %v\n%s", args, err, out)
		}
		return string(out)
	}
	if out := grpcurl(addr, "list"); !strings.Contains(out, "inference.GRPCInferenceService") || !strings.Contains(out, "grpc.health.v1.Health") {
		t.Errorf("grpcurl list:\n%s", out)
	}
	infer := `{"model_name": "iris", "id": "g1", "inputs": [{"name": "features", "datatype": "FP32", "shape": [1, 4], "contents": {"fp32_contents": [5.1, 3.5, 1.4, 0.2]}}]}`
	for _, tt := range []struct {
		method, data, want string
	}{
		{"ServerLive", "", `"live": true`},
		{"ServerReady", "", `"ready": true`},
		{"ModelReady", `{"name": "iris", "version": "1"}`, `"ready": true`},
		{"ServerMetadata", "", `"name": "modelserve"`},
		{"ModelMetadata", `{"name": "iris"}`, `"platform": "onnx_onnxv1"`},
		{"ModelInfer", infer, `"int64Contents": [`},
		{"RepositoryIndex", `{"ready": true}`, `"state": "READY"`},
		{"RepositoryModelLoad", `{"model_name": "iris"}`, `{`},
	} {
		args := []string{}
		if tt.data != "" {
			args = append(args, "-d", tt.data)
		}
		by := map[string][]string{
			"reflection": append(slices.Clone(args), addr, "inference.GRPCInferenceService/"+tt.method),
			"proto file": append(append([]string{"-import-path", "oip", "-proto", "inference.proto"}, args...), addr, "inference.GRPCInferenceService/"+tt.method),
		}
		for how, a := range by {
			if out := grpcurl(a...); !strings.Contains(out, tt.want) {
				t.Errorf("%s by %s:\n%s\nwant %s", tt.method, how, out, tt.want)
			}
		}
	}
	if out := grpcurl(addr, "grpc.health.v1.Health/Check"); !strings.Contains(out, `"status": "SERVING"`) {
		t.Errorf("health: %s", out)
	}
}

func TestServe_gRPCRepositoryLoadsAndUnloads(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	c.must("registry", "log", "--name", "strings", "--version", "1", "--file", testenv.Model(t, "strings"))
	s := c.serve("--model", "iris", "--workers", "1", "--grpc-port", "0", "--model-control")
	s.waitReady()
	cl, _ := grpcClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	index := func() string {
		t.Helper()
		r, err := cl.RepositoryIndex(ctx, &oip.RepositoryIndexRequest{})
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, m := range r.GetModels() {
			out = append(out, m.GetName()+":"+m.GetVersion()+":"+m.GetState())
		}
		return strings.Join(out, " ")
	}
	if got := index(); got != "iris:1:READY strings::UNAVAILABLE" {
		t.Errorf("index %s", got)
	}
	if _, err := cl.RepositoryModelLoad(ctx, &oip.RepositoryModelLoadRequest{ModelName: "strings",
		Parameters: map[string]*oip.ModelRepositoryParameter{"version": {ParameterChoice: &oip.ModelRepositoryParameter_StringParam{StringParam: "1"}}}}); err != nil {
		t.Fatal(err)
	}
	if r, err := cl.ModelReady(ctx, &oip.ModelReadyRequest{Name: "strings"}); err != nil || !r.GetReady() {
		t.Errorf("strings after its load: %v %v", r, err)
	}
	if got := index(); got != "iris:1:READY strings:1:READY" {
		t.Errorf("index after the load %s", got)
	}
	if _, err := cl.RepositoryModelUnload(ctx, &oip.RepositoryModelUnloadRequest{ModelName: "strings"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cl.ModelReady(ctx, &oip.ModelReadyRequest{Name: "strings"}); status.Code(err) != codes.NotFound {
		t.Errorf("strings after its unload = %v, want NotFound", err)
	}
	if _, err := cl.RepositoryModelLoad(ctx, &oip.RepositoryModelLoadRequest{ModelName: "dlrm"}); status.Code(err) != codes.NotFound {
		t.Errorf("loading a model not in the registry = %v, want NotFound", err)
	}
}

func TestServe_halfPrecisionEveryWay(t *testing.T) {
	c := newCLI(t)
	c.must("registry", "log", "--name", "half", "--version", "1", "--file", testenv.Model(t, "half"))
	s := c.serve("--model", "half", "--workers", "1", "--grpc-port", "0")
	s.waitReady()

	// The gateway's JSON and the protocol's: the same values, rounded to
	// half precision on the way in (0.1 is 0.0999755859375).
	if code, body := s.post("/predict", `{"data": [[0, [1, 2, 0.1]], [1, [0.5, -1, 65504]]]}`); code != 200 ||
		body != `{"data":[[0,{"doubled":[2,4,0.19995117],"total":3.0999756}],[1,{"doubled":[1,-2,null],"total":65503.5}]]}` {
		t.Errorf("gateway = %d %s", code, body)
	}
	infer := `{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP16", "data": [1, 2, 0.1]}]}`
	if code, body := s.post("/v2/models/half/infer", infer); code != 200 ||
		body != `{"model_name":"half","model_version":"1","outputs":[{"name":"doubled","datatype":"FP16","shape":[1,3],"data":[2,4,0.19995117]},{"name":"total","datatype":"FP32","shape":[1],"data":[3.0999756]}]}` {
		t.Errorf("OIP JSON = %d %s", code, body)
	}

	// gRPC: FP16 only as raw contents, both ways.
	cl, _ := grpcClient(t, s)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	halves := func(fs ...float64) []byte {
		var b []byte
		for _, f := range fs {
			b = le.LittleEndian.AppendUint16(b, uint16(model.ToHalf(f)))
		}
		return b
	}
	r, err := cl.ModelInfer(ctx, &oip.ModelInferRequest{ModelName: "half",
		Inputs:           []*oip.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP16", Shape: []int64{1, 3}}},
		RawInputContents: [][]byte{halves(1, 2, 0.1)}})
	if err != nil {
		t.Fatal(err)
	}
	if raw := r.GetRawOutputContents(); len(raw) != 2 || string(raw[0]) != string(halves(2, 4, 0.2)) || math.Float32frombits(le.LittleEndian.Uint32(raw[1])) != 3.0999756 {
		t.Errorf("gRPC FP16 = %v", r)
	}
	if _, err := cl.ModelInfer(ctx, &oip.ModelInferRequest{ModelName: "half",
		Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP16", Shape: []int64{1, 3}, Contents: &oip.InferTensorContents{Fp32Contents: []float32{1, 2, 3}}}}}); status.Code(err) != codes.InvalidArgument {
		t.Errorf("FP16 as typed contents = %v, want InvalidArgument", err)
	}
}
