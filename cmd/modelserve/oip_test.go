package main

import (
	"bytes"
	le "encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modelserve/modelserve/internal/testenv"
)

func TestServe_openInferenceProtocolOverREST(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	models := []string{"strings", "types", "image", "sequence"}
	for _, m := range models {
		c.must("registry", "log", "--name", m, "--version", "1", "--file", testenv.Model(t, m))
	}
	args := []string{"--workers", "1", "--default-model", "iris", "--model", "iris"}
	for _, m := range models {
		args = append(args, "--model", m)
	}
	s := c.serve(args...)
	s.waitReady()

	for _, tt := range []struct {
		path string
		code int
		body string
	}{
		{"/v2/health/live", 200, ""},
		{"/v2/health/ready", 200, ""},
		{"/v2/models/iris/ready", 200, ""},
		{"/v2/models/iris/versions/1/ready", 200, ""},
		{"/v2/models/iris/versions/7/ready", 404, `{"error":"model iris has no version \"7\" loaded here (version served: 1)"}`},
		{"/v2/models/dlrm/ready", 404, `{"error":"no model \"dlrm\" is served here"}`},
		{"/v2/models/types", 200, `{"name":"types","versions":["1"],"platform":"onnx_onnxv1","inputs":[{"name":"i32","datatype":"INT32","shape":[-1]},{"name":"u8","datatype":"UINT8","shape":[-1]},{"name":"f64","datatype":"FP64","shape":[-1]},{"name":"flag","datatype":"BOOL","shape":[-1]}],"outputs":[{"name":"sum","datatype":"FP64","shape":[-1]},{"name":"not_flag","datatype":"BOOL","shape":[-1]},{"name":"doubled","datatype":"INT64","shape":[-1]}]}`},
		{"/v2/models/sequence/versions/1", 200, `{"name":"sequence","versions":["1"],"platform":"onnx_onnxv1","inputs":[{"name":"tokens","datatype":"INT64","shape":[-1,-1]}],"outputs":[{"name":"count","datatype":"INT64","shape":[-1]}]}`},
	} {
		if code, body := s.get(tt.path); code != tt.code || body != tt.body {
			t.Errorf("GET %s = %d %s\nwant %d %s", tt.path, code, body, tt.code, tt.body)
		}
	}
	_, meta := s.get("/v2")
	if !strings.HasPrefix(meta, `{"name":"modelserve","version":"`) || !strings.HasSuffix(meta, `"extensions":["binary_tensor_data"]}`) {
		t.Errorf("server metadata %s", meta)
	}

	// Every datatype the models take, nested and flat, through infer; the
	// same rows through the gateway's routes answer the same.
	for _, tt := range []struct {
		model, infer, want, gateway, gatewayWant string
	}{
		{"strings",
			`{"id": "s1", "inputs": [{"name": "color", "shape": [3], "datatype": "BYTES", "data": ["RED", "Blue", "violet"]}, {"name": "amount", "shape": [3], "datatype": "FP32", "data": [2.5, 1, 3]}]}`,
			`{"model_name":"strings","model_version":"1","id":"s1","outputs":[{"name":"normalized","datatype":"BYTES","shape":[3],"data":["red","blue","violet"]},{"name":"code","datatype":"INT64","shape":[3],"data":[1,3,0]},{"name":"score","datatype":"FP32","shape":[3],"data":[2.5,3,0]}]}`,
			`{"data": [[0, "RED", 2.5], [1, "Blue", 1], [2, "violet", 3]]}`,
			`{"data":[[0,{"normalized":"red","code":1,"score":2.5}],[1,{"normalized":"blue","code":3,"score":3}],[2,{"normalized":"violet","code":0,"score":0}]]}`},
		{"types",
			`{"inputs": [{"name": "i32", "shape": [2], "datatype": "INT32", "data": [-7, 2]}, {"name": "u8", "shape": [2], "datatype": "UINT8", "data": [200, 1]}, {"name": "f64", "shape": [2], "datatype": "FP64", "data": [0.25, 1]}, {"name": "flag", "shape": [2], "datatype": "BOOL", "data": [true, false]}], "outputs": [{"name": "doubled"}, {"name": "sum"}]}`,
			`{"model_name":"types","model_version":"1","outputs":[{"name":"doubled","datatype":"INT64","shape":[2],"data":[-14,4]},{"name":"sum","datatype":"FP64","shape":[2],"data":[193.25,4]}]}`,
			`{"data": [[0, -7, 200, 0.25, true], [1, "2", 1, 1, false]]}`,
			`{"data":[[0,{"sum":193.25,"not_flag":false,"doubled":-14}],[1,{"sum":4,"not_flag":true,"doubled":4}]]}`},
		{"image",
			`{"inputs": [{"name": "pixels", "shape": [1, 2, 3, 3], "datatype": "FP32", "data": [[[[1,2,3],[4,5,6],[7,8,9]], [[1,1,1],[1,1,1],[1,1,1]]]]}]}`,
			`{"model_name":"image","model_version":"1","outputs":[{"name":"channel_max","datatype":"FP32","shape":[1,2],"data":[9,1]},{"name":"grid","datatype":"FP32","shape":[1,3,3],"data":[2,3,4,5,6,7,8,9,10]}]}`,
			`{"data": [[0, [1,2,3,4,5,6,7,8,9, 1,1,1,1,1,1,1,1,1]]]}`,
			`{"data":[[0,{"channel_max":[9,1],"grid":[[2,3,4],[5,6,7],[8,9,10]]}]]}`},
		{"sequence",
			`{"inputs": [{"name": "tokens", "shape": [2, 3], "datatype": "INT64", "data": [1, 0, 3, 0, 0, 0]}]}`,
			`{"model_name":"sequence","model_version":"1","outputs":[{"name":"count","datatype":"INT64","shape":[2],"data":[2,0]}]}`,
			`{"data": [[0, [1, 0, 3]], [1, [0, 0, 0]]]}`,
			`{"data":[[0,{"count":2}],[1,{"count":0}]]}`},
	} {
		if code, body := s.post("/v2/models/"+tt.model+"/infer", tt.infer); code != 200 || body != tt.want {
			t.Errorf("%s infer = %d %s\nwant %s", tt.model, code, body, tt.want)
		}
		if code, body := s.post("/v2/models/"+tt.model+"/versions/1/infer", tt.infer); code != 200 || body != tt.want {
			t.Errorf("%s infer at version 1 = %d %s", tt.model, code, body)
		}
		if code, body := s.post("/"+tt.model+"/predict", tt.gateway); code != 200 || body != tt.gatewayWant {
			t.Errorf("%s through the gateway = %d %s\nwant %s", tt.model, code, body, tt.gatewayWant)
		}
	}

	// iris: three rows both ways, the same labels and probabilities.
	rows := [][]float32{{5.1, 3.5, 1.4, 0.2}, {6.7, 3.0, 5.2, 2.3}, {5.9, 3.0, 4.2, 1.5}}
	flat, _ := json.Marshal(rows)
	code, body := s.post("/v2/models/iris/infer", `{"inputs": [{"name": "features", "shape": [3, 4], "datatype": "FP32", "data": `+string(flat)+`}]}`)
	var resp struct {
		Outputs []struct {
			Name string
			Data []float64
		}
	}
	if err := json.Unmarshal([]byte(body), &resp); code != 200 || err != nil {
		t.Fatalf("iris infer = %d %s", code, body)
	}
	for i, r := range rows {
		row, _ := json.Marshal(r)
		_, g := s.post("/iris/predict", `{"data": [[0, `+strings.Trim(string(row), "[]")+`]]}`)
		for _, o := range resp.Outputs {
			if o.Name != "label" {
				continue
			}
			if want := `"label":` + jsonNumber(o.Data[i]); !strings.Contains(g, want) {
				t.Errorf("row %d: infer label %v, gateway %s", i, o.Data[i], g)
			}
		}
	}

	// Errors are the protocol's {"error": ...}, statuses as the gateway's.
	for _, tt := range []struct {
		path, body string
		code       int
		want       string
	}{
		{"/v2/models/iris/infer", `{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}]}`, 400,
			`{"error":"column \"features\": datatype \"FP64\"; this input is FP32"}`},
		{"/v2/models/iris/infer", `not json`, 400, `{"error":"the body is not valid JSON"}`},
		{"/v2/models/dlrm/infer", `{}`, 404, `{"error":"no model \"dlrm\" is served here"}`},
		{"/v2/models/iris/versions/2/infer", `{}`, 404, `{"error":"model iris has no version \"2\" loaded here (version served: 1)"}`},
	} {
		if code, body := s.post(tt.path, tt.body); code != tt.code || body != tt.want {
			t.Errorf("POST %s %s = %d %s\nwant %d %s", tt.path, tt.body, code, body, tt.code, tt.want)
		}
	}
	if _, m := s.get("/metrics"); !strings.Contains(m, `modelserve_requests_total{function="infer",model="types",outcome="ok",protocol="oip",version="1"} 2`) ||
		!strings.Contains(m, `modelserve_requests_total{function="predict",model="types",outcome="ok",protocol="gateway",version="1"} 1`) {
		t.Errorf("requests are not counted by protocol")
	}
}

func jsonNumber(f float64) string {
	b, _ := json.Marshal(f)
	return string(b)
}

func TestServe_openInferenceProtocolBinaryData(t *testing.T) {
	c := newCLI(t)
	c.must("registry", "log", "--name", "strings", "--version", "1", "--file", testenv.Model(t, "strings"))
	s := c.serve("--model", "strings", "--workers", "1")
	s.waitReady()

	// color as BYTES (length-prefixed), amount as FP32, both binary; the
	// answer's code binary, score as JSON.
	var bin []byte
	for _, v := range []string{"RED", "Blue"} {
		bin = le.LittleEndian.AppendUint32(bin, uint32(len(v)))
		bin = append(bin, v...)
	}
	for _, f := range []float32{2.5, 1} {
		bin = le.LittleEndian.AppendUint32(bin, math.Float32bits(f))
	}
	header := `{"inputs": [{"name": "color", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 15}},` +
		`{"name": "amount", "shape": [2], "datatype": "FP32", "parameters": {"binary_data_size": 8}}],` +
		`"outputs": [{"name": "code", "parameters": {"binary_data": true}}, {"name": "score"}]}`
	req, _ := http.NewRequest("POST", s.url+"/v2/models/strings/infer", bytes.NewReader(append([]byte(header), bin...)))
	req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(header)))
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	n, err := strconv.Atoi(resp.Header.Get("Inference-Header-Content-Length"))
	if resp.StatusCode != 200 || err != nil || n > len(body) {
		t.Fatalf("binary infer = %d %q (header length %q)", resp.StatusCode, body, resp.Header.Get("Inference-Header-Content-Length"))
	}
	if want := `{"model_name":"strings","model_version":"1","outputs":[{"name":"code","datatype":"INT64","shape":[2],"parameters":{"binary_data_size":16}},{"name":"score","datatype":"FP32","shape":[2],"data":[2.5,3]}]}`; string(body[:n]) != want {
		t.Errorf("header %s\nwant %s", body[:n], want)
	}
	codes := body[n:]
	if len(codes) != 16 || le.LittleEndian.Uint64(codes) != 1 || le.LittleEndian.Uint64(codes[8:]) != 3 {
		t.Errorf("binary codes %v, want 1 and 3 as little-endian int64", codes)
	}
}

// TestServe_binaryInputsReadInPlaceAnswerAsJSONDoes: binary inputs read
// in place from pooled body buffers, by concurrent callers whose requests
// are split into pieces and share calls, some of them giving up midway,
// answer exactly as the same rows sent as JSON.
func TestServe_binaryInputsReadInPlaceAnswerAsJSONDoes(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris", "--workers", "2", "--max-batch-rows", "4")
	s.waitReady()
	const callers, requests, rows = 4, 25, 16
	concurrently(t, callers, func(k int) error {
		impatient := &http.Client{Timeout: time.Millisecond}
		for i := range requests {
			feats := make([]float32, rows*4)
			var blob []byte
			for j := range feats {
				feats[j] = float32(k*1000+i*10+j%7) / 100
				blob = le.LittleEndian.AppendUint32(blob, math.Float32bits(feats[j]))
			}
			// Padded so the binary section is aligned for FP32.
			header := fmt.Sprintf(`{"inputs": [{"name": "features", "shape": [%d, 4], "datatype": "FP32", "parameters": {"binary_data_size": %d}}],`+
				`"outputs": [{"name": "probabilities", "parameters": {"binary_data": true}}]}`, rows, len(blob))
			header += strings.Repeat(" ", (4-len(header)%4)%4)
			send := func(client *http.Client) (*http.Response, error) {
				req, _ := http.NewRequest("POST", s.url+"/v2/models/iris/infer", bytes.NewReader(append([]byte(header), blob...)))
				req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(header)))
				return client.Do(req)
			}
			if i%5 == 4 {
				if resp, err := send(impatient); err == nil {
					resp.Body.Close()
				}
				continue
			}
			resp, err := send(http.DefaultClient)
			if err != nil {
				return err
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			n, err := strconv.Atoi(resp.Header.Get("Inference-Header-Content-Length"))
			if resp.StatusCode != 200 || err != nil || n > len(body) {
				return fmt.Errorf("binary infer = %d %q", resp.StatusCode, body)
			}
			got := make([]float32, (len(body)-n)/4)
			for j := range got {
				got[j] = math.Float32frombits(le.LittleEndian.Uint32(body[n+4*j:]))
			}
			want, err := irisProbabilities(s.url, feats)
			if err != nil {
				return err
			}
			if !slices.Equal(got, want) {
				return fmt.Errorf("caller %d, request %d: binary answers %v, JSON %v", k, i, got, want)
			}
		}
		return nil
	})
}

// TestServe_gatewayInputsFromPooledMemoryAnswerAsOIPDoes: large gateway
// batches decoded into pooled tensor memory (given back once no call reads
// it, and written over by the next batch), from concurrent callers of
// different sizes, split into calls, some giving up midway, answer
// exactly as the same rows sent through the Open Inference Protocol,
// whose decoder pools nothing.
func TestServe_gatewayInputsFromPooledMemoryAnswerAsOIPDoes(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris", "--workers", "2", "--max-batch-rows", "700")
	s.waitReady()
	const callers, requests = 3, 8
	concurrently(t, callers, func(k int) error {
		impatient := &http.Client{Timeout: time.Millisecond}
		for i := range requests {
			rows := 4100 + (k*requests+i)*37%600 // pooled: at least 16K floats
			feats := make([]float32, rows*4)
			var body strings.Builder
			body.WriteString(`{"data": [`)
			for r := range rows {
				for j := range 4 {
					feats[r*4+j] = float32((k*7+i*3+r+j)%97) / 10
				}
				if r > 0 {
					body.WriteString(",")
				}
				fmt.Fprintf(&body, "[%d, %v, %v, %v, %v]", r, feats[r*4], feats[r*4+1], feats[r*4+2], feats[r*4+3])
			}
			body.WriteString("]}")
			if i%4 == 3 {
				if resp, err := impatient.Post(s.url+"/predict-proba", "application/json", strings.NewReader(body.String())); err == nil {
					resp.Body.Close()
				}
				continue
			}
			resp, err := http.Post(s.url+"/predict-proba", "application/json", strings.NewReader(body.String()))
			if err != nil {
				return err
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			var got struct{ Data [][]json.RawMessage }
			if err := json.Unmarshal(answer, &got); resp.StatusCode != 200 || err != nil || len(got.Data) != rows {
				return fmt.Errorf("gateway = %d %.200s", resp.StatusCode, answer)
			}
			want, err := irisProbabilities(s.url, feats)
			if err != nil {
				return err
			}
			for r, row := range got.Data {
				var cell struct{ Probabilities []float32 }
				if len(row) != 2 || json.Unmarshal(row[1], &cell) != nil || !slices.Equal(cell.Probabilities, want[r*3:r*3+3]) {
					return fmt.Errorf("caller %d, request %d, row %d: gateway %s, OIP %v", k, i, r, row, want[r*3:r*3+3])
				}
			}
		}
		return nil
	})
}

// irisProbabilities asks the server for iris's probabilities of rows of
// four features through the Open Inference Protocol, as JSON.
func irisProbabilities(url string, feats []float32) ([]float32, error) {
	data, _ := json.Marshal(feats)
	resp, err := http.Post(url+"/v2/models/iris/infer", "application/json", strings.NewReader(fmt.Sprintf(
		`{"inputs": [{"name": "features", "shape": [%d, 4], "datatype": "FP32", "data": %s}], "outputs": [{"name": "probabilities"}]}`, len(feats)/4, data)))
	if err != nil {
		return nil, err
	}
	answer, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var want struct{ Outputs []struct{ Data []float32 } }
	if err := json.Unmarshal(answer, &want); resp.StatusCode != 200 || err != nil || len(want.Outputs) != 1 || len(want.Outputs[0].Data) != len(feats)/4*3 {
		return nil, fmt.Errorf("JSON infer = %d %.200s", resp.StatusCode, answer)
	}
	return want.Outputs[0].Data, nil
}

// concurrently runs call for callers 0..n-1 at once and reports each
// error.
func concurrently(t *testing.T, n int, call func(k int) error) {
	t.Helper()
	errs := make(chan error, n)
	for k := range n {
		go func() { errs <- call(k) }()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
