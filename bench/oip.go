package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/internal/loadgen"
	"github.com/modelserve/modelserve/oip"
)

// oipSection: the MLP's rows through the gateway's JSON route, the Open
// Inference Protocol's JSON infer and its binary infer, against raw ONNX
// Runtime with the same workers; 1-row and 4096-row requests.
func oipSection(e *env) (string, error) {
	cpus := runtime.GOMAXPROCS(0)
	p := engine.PlanCPU(engine.Options{}, cpus)
	s, err := e.serve(mlp, "--grpc-port", "0")
	if err != nil {
		return "", err
	}
	defer s.stop()
	// The same server with calls as large as the requests: raw runs
	// 4096-row calls; the default cuts them to 1024.
	big, err := e.serve(mlp, "--max-batch-rows", "4096", "--grpc-port", "0")
	if err != nil {
		return "", err
	}
	defer big.stop()
	var b strings.Builder
	fmt.Fprintf(&b, "## The Open Inference Protocol: JSON and binary against the gateway and raw\n\n")
	fmt.Fprintf(&b, "The MLP (64 floats in, 8 out), one server with default flags and `--grpc-port 0` (and one with `--max-batch-rows 4096` too, for the rows that say so); each request a batch of that many rows; callers in a closed loop for %s after 1s of warm-up. Raw: the same workers' sessions in-process, tensors bound once. Gateway: `/predict`, one array per row. OIP JSON: `/v2/models/mlp/infer`, one FP32 tensor, data flat. OIP binary: the same tensor as binary data (`Inference-Header-Content-Length`), the output asked for as binary too. HTTP callers each hold a connection (HTTP/1.1 carries one request at a time). gRPC: `ModelInfer` with `raw_input_contents` from the generated Go client, every caller's calls on one shared connection, as gRPC clients multiplex them. CPU a request: the server's and the load generator's (this process's) CPU time over the run, per answered request; both share the machine's %d cores.\n\n", e.o.duration, cpus)
	fmt.Fprintln(&b, "| rows per request | path | callers | rows/s | ÷ raw | p50 | p99 | server CPU a request | generator CPU a request | answers other than 200 |")
	fmt.Fprintln(&b, "|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|")
	for _, rows := range []int{1, 4096} {
		conns := 16
		if rows > 1 {
			conns = p.Workers + 1
		}
		fmt.Fprintf(os.Stderr, "bench: oip, %d-row requests\n", rows)
		raw, err := measureRaw(e.modelPath(mlp), mlp, rows, p, e.o.duration)
		if err != nil {
			return "", fmt.Errorf("raw: %w", err)
		}
		fmt.Fprintf(&b, "| %d | raw ONNX Runtime (%d×%d) | | %.0f | 1.00 | | | | | |\n", rows, p.Workers, p.IntraOpThreads, raw)
		header, blob := oipBinaryBody(rows)
		paths := []struct {
			name, route string
			body        []byte
			headerLen   int
			p           *process
		}{
			{"gateway JSON", "/predict", body(mlp, rows, false), 0, s},
			{"OIP JSON", "/v2/models/mlp/infer", oipJSONBody(rows), 0, s},
			{"OIP binary", "/v2/models/mlp/infer", append([]byte(header), blob...), len(header), s},
			{"gRPC, raw contents", "", nil, 0, s},
		}
		if rows > 64 {
			paths = append(paths, paths[2], paths[3])
			paths[4].name, paths[4].p = "OIP binary, --max-batch-rows 4096", big
			paths[5].name, paths[5].p = "gRPC, raw contents, --max-batch-rows 4096", big
		}
		for _, path := range paths {
			cpu0, self0, t0 := cpuOf(path.p), selfCPU(), time.Now()
			var st *loadgen.Stats
			if path.route == "" {
				if st, err = grpcClosedLoop(path.p.grpc, blob, rows, conns, e.o.duration); err != nil {
					return "", err
				}
			} else {
				t, err := loadgen.NewTarget("http://"+path.p.host+path.route, conns)
				if err != nil {
					return "", err
				}
				if path.headerLen > 0 {
					t.SetHeader("Inference-Header-Content-Length", strconv.Itoa(path.headerLen))
				}
				st = t.Closed(path.body, conns, time.Second, e.o.duration, nil)
			}
			// CPU over the whole run, warm-up included, per request at
			// the measured rate.
			wall := time.Since(t0).Seconds()
			perRequest := func(cpu time.Duration) string {
				if st.OKPerSecond() == 0 {
					return "-"
				}
				return short(time.Duration(cpu.Seconds() / wall / st.OKPerSecond() * float64(time.Second))).String()
			}
			served := st.OKPerSecond() * float64(rows)
			fmt.Fprintf(&b, "| %d | %s | %d | %.0f | %.2f | %s | %s | %s | %s | %d |\n", rows, path.name, conns, served, served/raw,
				short(percentile(st.OK, 0.5)), short(percentile(st.OK, 0.99)), perRequest(cpuOf(path.p)-cpu0), perRequest(selfCPU()-self0),
				st.Others()+len(st.Rejected))
		}
	}
	fmt.Fprintf(&b, "\nTargets: OIP binary and gRPC at 4096 rows ≥ 0.8× raw ONNX Runtime; gRPC 1-row requests/s ≥ REST's.\n")
	return b.String(), nil
}

// cpuOf is the CPU time p has used, 0 if it cannot be read.
func cpuOf(p *process) time.Duration {
	d, _ := p.cpu()
	return d
}

// mlpRows are the bench's MLP rows, 64 floats each in [-1, 1).
func mlpRows(rows int) []float32 {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]float32, rows*64)
	for i := range out {
		out[i] = rng.Float32()*2 - 1
	}
	return out
}

// oipJSONBody is an inference request of rows MLP rows, data flat.
func oipJSONBody(rows int) []byte {
	b := []byte(`{"inputs":[{"name":"x","datatype":"FP32","shape":[` + strconv.Itoa(rows) + `,64],"data":[`)
	for i, f := range mlpRows(rows) {
		if i > 0 {
			b = append(b, ',')
		}
		b = strconv.AppendFloat(b, float64(f), 'g', -1, 32)
	}
	return append(b, "]}]}"...)
}

// oipBinaryBody is the same request with the tensor as binary data, the
// output asked for as binary: its JSON header and its binary section.
func oipBinaryBody(rows int) (string, []byte) {
	data := mlpRows(rows)
	blob := make([]byte, 0, 4*len(data))
	for _, f := range data {
		blob = binary.LittleEndian.AppendUint32(blob, math.Float32bits(f))
	}
	header := `{"inputs":[{"name":"x","datatype":"FP32","shape":[` + strconv.Itoa(rows) + `,64],"parameters":{"binary_data_size":` +
		strconv.Itoa(len(blob)) + `}}],"parameters":{"binary_data_output":true}}`
	return header, blob
}

// grpcClosedLoop calls ModelInfer with the rows as raw contents from
// callers callers sharing one connection, for d after a second of warm-up.
func grpcClosedLoop(addr string, blob []byte, rows, callers int, d time.Duration) (*loadgen.Stats, error) {
	req := &oip.ModelInferRequest{ModelName: "mlp",
		Inputs:           []*oip.ModelInferRequest_InferInputTensor{{Name: "x", Datatype: "FP32", Shape: []int64{int64(rows), 64}}},
		RawInputContents: [][]byte{blob}}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		return nil, err
	}
	defer cc.Close()
	client := oip.NewGRPCInferenceServiceClient(cc)
	return loadgen.ClosedFunc(callers, time.Second, d, func(int) (int, error) {
		_, err := client.ModelInfer(context.Background(), req)
		if st, ok := status.FromError(err); ok && st.Code() == codes.ResourceExhausted {
			return http.StatusTooManyRequests, nil
		}
		if err != nil {
			return 0, err
		}
		return http.StatusOK, nil
	}), nil
}
