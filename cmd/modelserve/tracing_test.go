package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	coltrace "go.opentelemetry.io/proto/otlp/collector/trace/v1"
	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/protobuf/proto"

	"github.com/modelserve/modelserve/oip"
)

// collector is an OTLP/HTTP trace receiver: it decodes each export's
// protobuf payload as a collector does and keeps the spans.
type collector struct {
	mu      sync.Mutex
	spans   []*tracepb.Span
	exports int
	bad     []string
}

func (c *collector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var req coltrace.ExportTraceServiceRequest
	if err == nil {
		err = proto.Unmarshal(body, &req)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Method != http.MethodPost || r.URL.Path != "/v1/traces" || r.Header.Get("Content-Type") != "application/x-protobuf" || err != nil {
		c.bad = append(c.bad, fmt.Sprintf("%s %s %s: %v", r.Method, r.URL.Path, r.Header.Get("Content-Type"), err))
		http.Error(w, "not an OTLP trace export", http.StatusBadRequest)
		return
	}
	c.exports++
	for _, rs := range req.GetResourceSpans() {
		for _, ss := range rs.GetScopeSpans() {
			c.spans = append(c.spans, ss.GetSpans()...)
		}
	}
	out, _ := proto.Marshal(&coltrace.ExportTraceServiceResponse{})
	w.Header().Set("Content-Type", "application/x-protobuf")
	w.Write(out)
}

// trace is the spans received of one trace.
func (c *collector) trace(id string) []*tracepb.Span {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []*tracepb.Span
	for _, s := range c.spans {
		if hex.EncodeToString(s.GetTraceId()) == id {
			out = append(out, s)
		}
	}
	return out
}

func spanNamed(spans []*tracepb.Span, name string) *tracepb.Span {
	for _, s := range spans {
		if s.GetName() == name {
			return s
		}
	}
	return nil
}

func attr(s *tracepb.Span, key string) string {
	for _, kv := range s.GetAttributes() {
		if kv.GetKey() == key {
			v := kv.GetValue()
			if v.GetStringValue() != "" {
				return v.GetStringValue()
			}
			return fmt.Sprint(v.GetIntValue())
		}
	}
	return ""
}

// TestServe_tracesRequestsToAnOTLPCollector: requests that carry a sampled
// traceparent (gateway JSON, the Open Inference Protocol over REST and
// over gRPC) reach a real OTLP/HTTP receiver as spans of the caller's
// trace: the request's span a child of the caller's, each stage a child
// of it, the call that ran the rows a "batch" span linked to the request
// and the request's execute span linked to it; the gateway's audit line
// names the trace. A traceparent that is not sampled is followed (no
// spans), and with --trace-sample 0 nothing is traced at all.
func TestServe_tracesRequestsToAnOTLPCollector(t *testing.T) {
	col := &collector{}
	rcv := httptest.NewServer(col)
	defer rcv.Close()
	c := newCLI(t)
	c.logIris()
	// A tiny sample: only the callers' sampled traces are recorded.
	s := c.serve("--model", "iris", "--workers", "1", "--grpc-port", "0", "--otlp-endpoint", rcv.URL, "--trace-sample", "0.000001")
	s.waitReady()
	cl, _ := grpcClient(t, s)

	const parent = "00f067aa0ba902b7"
	traceparent := func(id, flags string) string { return "00-" + id + "-" + parent + "-" + flags }
	post := func(path, body string, headers map[string]string) {
		t.Helper()
		req, _ := http.NewRequest(http.MethodPost, s.url+path, strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		for k, v := range headers {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("%s: %d %s", path, resp.StatusCode, b)
		}
	}
	gatewayTrace := "4bf92f3577b34da6a3ce929d0e0e4736"
	post("/predict", `{"data":[[0,5.1,3.5,1.4,0.2],[1,6.2,2.9,4.3,1.3]]}`, map[string]string{
		"traceparent": traceparent(gatewayTrace, "01"), "tracestate": "vendor=1",
		"sf-external-function-current-query-id": "q1", "sf-external-function-query-batch-id": "b1"})
	oipTrace := "5bf92f3577b34da6a3ce929d0e0e4736"
	post("/v2/models/iris/infer", `{"inputs":[{"name":"features","datatype":"FP32","shape":[1,4],"data":[5.1,3.5,1.4,0.2]}]}`,
		map[string]string{"traceparent": traceparent(oipTrace, "01")})
	grpcTrace := "6bf92f3577b34da6a3ce929d0e0e4736"
	ctx, cancel := context.WithTimeout(metadata.AppendToOutgoingContext(context.Background(), "traceparent", traceparent(grpcTrace, "01")), 30*time.Second)
	defer cancel()
	inputs := []*oip.ModelInferRequest_InferInputTensor{{Name: "features", Datatype: "FP32", Shape: []int64{1, 4},
		Contents: &oip.InferTensorContents{Fp32Contents: []float32{5.1, 3.5, 1.4, 0.2}}}}
	if _, err := cl.ModelInfer(ctx, &oip.ModelInferRequest{ModelName: "iris", Inputs: inputs}); err != nil {
		t.Fatal(err)
	}
	unsampledTrace := "7bf92f3577b34da6a3ce929d0e0e4736"
	post("/predict", `{"data":[[0,5.1,3.5,1.4,0.2]]}`, map[string]string{"traceparent": traceparent(unsampledTrace, "00")})

	stages := []string{"receive", "decode", "queue", "execute", "encode", "write"}
	want := map[string]struct {
		root   string
		stages []string
	}{
		gatewayTrace: {"POST /iris/predict", stages},
		oipTrace:     {"POST /v2/models/iris/infer", stages},
		grpcTrace:    {"inference.GRPCInferenceService/ModelInfer", []string{"decode", "queue", "execute", "encode"}},
	}
	waitFor(t, 20*time.Second, "every span exported", func() bool {
		for id, w := range want {
			if len(col.trace(id)) < 2+len(w.stages) {
				return false
			}
		}
		return true
	}, s.logs)
	for id, w := range want {
		spans := col.trace(id)
		root := spanNamed(spans, w.root)
		if root == nil {
			t.Errorf("trace %s: no span %q in %d spans", id, w.root, len(spans))
			continue
		}
		if hex.EncodeToString(root.GetParentSpanId()) != parent || root.GetKind() != tracepb.Span_SPAN_KIND_SERVER {
			t.Errorf("%s: parent %x kind %v, want the caller's span %s, server", w.root, root.GetParentSpanId(), root.GetKind(), parent)
		}
		if attr(root, "modelserve.model") != "iris" || attr(root, "http.response.status_code") != "200" || attr(root, "modelserve.version") != "1" {
			t.Errorf("%s: attributes %v", w.root, root.GetAttributes())
		}
		for _, name := range w.stages {
			st := spanNamed(spans, name)
			if st == nil {
				t.Errorf("%s: no %s span", w.root, name)
				continue
			}
			if !slices.Equal(st.GetParentSpanId(), root.GetSpanId()) {
				t.Errorf("%s: %s's parent is %x, want the request's span %x", w.root, name, st.GetParentSpanId(), root.GetSpanId())
			}
			if st.GetStartTimeUnixNano() < root.GetStartTimeUnixNano() || st.GetEndTimeUnixNano() < st.GetStartTimeUnixNano() {
				t.Errorf("%s: %s runs from %d to %d, the request from %d", w.root, name, st.GetStartTimeUnixNano(), st.GetEndTimeUnixNano(), root.GetStartTimeUnixNano())
			}
		}
		batch := spanNamed(spans, "batch")
		if batch == nil {
			t.Errorf("%s: no batch span", w.root)
			continue
		}
		if !slices.Equal(batch.GetParentSpanId(), root.GetSpanId()) || len(batch.GetLinks()) != 1 || !slices.Equal(batch.GetLinks()[0].GetSpanId(), root.GetSpanId()) {
			t.Errorf("%s: the batch span's parent %x and links %v, want the request's span %x", w.root, batch.GetParentSpanId(), batch.GetLinks(), root.GetSpanId())
		}
		if attr(batch, "modelserve.device") != "cpu" || attr(batch, "modelserve.batch.rows") == "" {
			t.Errorf("%s: the batch span's attributes %v", w.root, batch.GetAttributes())
		}
		if exec := spanNamed(spans, "execute"); exec != nil && (len(exec.GetLinks()) != 1 || !slices.Equal(exec.GetLinks()[0].GetSpanId(), batch.GetSpanId())) {
			t.Errorf("%s: execute links %v, want the batch span %x", w.root, exec.GetLinks(), batch.GetSpanId())
		}
	}
	if root := spanNamed(col.trace(gatewayTrace), "POST /iris/predict"); root != nil && root.GetTraceState() != "vendor=1" {
		t.Errorf("tracestate %q, want the caller's vendor=1", root.GetTraceState())
	}
	if n := len(col.trace(unsampledTrace)); n != 0 {
		t.Errorf("%d spans of a trace the caller did not sample", n)
	}
	if !s.logged("trace_id=" + gatewayTrace) {
		t.Errorf("no log line names the gateway batch's trace:\n%s", s.logs)
	}
	if _, m := s.get("/metrics"); !strings.Contains(m, `modelserve_trace_spans_total{outcome="exported"}`) {
		t.Errorf("no exported spans counted in /metrics")
	}

	// Off: a sampled traceparent yields nothing.
	off := c.serve("--model", "iris", "--workers", "1", "--otlp-endpoint", rcv.URL, "--trace-sample", "0")
	off.waitReady()
	offTrace := "8bf92f3577b34da6a3ce929d0e0e4736"
	s = off
	post("/predict", `{"data":[[0,5.1,3.5,1.4,0.2]]}`, map[string]string{"traceparent": traceparent(offTrace, "01")})
	if err := off.stop(); err != nil { // a shutdown flushes what is queued
		t.Fatal(err)
	}
	if n := len(col.trace(offTrace)); n != 0 {
		t.Errorf("%d spans with --trace-sample 0", n)
	}
	col.mu.Lock()
	defer col.mu.Unlock()
	if len(col.bad) > 0 {
		t.Errorf("exports the receiver could not read: %v", col.bad)
	}
}
