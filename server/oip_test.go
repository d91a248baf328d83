package server

import (
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/model"
)

func TestDecodeOIP_tensorsNestedOrFlat(t *testing.T) {
	sig := mixedSig()
	body := `{"id": "42", "parameters": {"note": 1, "binary_data_output": false}, "inputs": [
		{"name": "tokens", "shape": [2, 3], "datatype": "INT64", "data": [[1, 2, 3], [4, 5, 6]]},
		{"name": "text", "shape": [2], "datatype": "BYTES", "data": ["a", "b"]},
		{"datatype": "FP32", "name": "emb", "shape": [2, 3], "data": [0.5, 1, 1.5, 2, 2.5, 3]},
		{"name": "flag", "shape": [2], "datatype": "BOOL", "data": [true, false]},
		{"name": "small", "shape": [2], "datatype": "INT8", "data": [-128, 127]},
		{"name": "pixels", "shape": [2, 2, 2], "datatype": "FP64", "data": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]]}
	], "outputs": [{"name": "y", "parameters": {"binary_data": false}}]}`
	req, err := decodeOIP([]byte(body), sig, []string{"y"})
	if err != nil {
		t.Fatal(err)
	}
	if req.id != "42" || req.rows != 2 || !slices.Equal(req.outputs, []int{0}) {
		t.Errorf("id %q rows %d outputs %v", req.id, req.rows, req.outputs)
	}
	checks := []struct {
		i    int
		want any
	}{
		{0, []string{"a", "b"}},
		{1, []float32{0.5, 1, 1.5, 2, 2.5, 3}},
		{2, []bool{true, false}},
		{3, []int8{-128, 127}},
		{4, []float64{1, 2, 3, 4, 5, 6, 7, 8}},
		{5, []int64{1, 2, 3, 4, 5, 6}},
	}
	for _, c := range checks {
		got, _ := json.Marshal(req.inputs[c.i].Data)
		want, _ := json.Marshal(c.want)
		if string(got) != string(want) {
			t.Errorf("input %s = %s, want %s", sig.Inputs[c.i].Name, got, want)
		}
	}
	if got := req.inputs[5].Shape; !slices.Equal(got, model.Shape{2, 3}) {
		t.Errorf("tokens shape %v", got)
	}

	out, _ := model.NewTensor(model.Float32, model.Shape{2})
	out.Data.([]float32)[0], out.Data.([]float32)[1] = 0.25, -1
	got := string(encodeOIP(nil, "mixed", "3", req, []string{"y"}, []model.Tensor{out}))
	if want := `{"model_name":"mixed","model_version":"3","id":"42","outputs":[{"name":"y","datatype":"FP32","shape":[2],"data":[0.25,-1]}]}`; got != want {
		t.Errorf("response\n%s\nwant\n%s", got, want)
	}
}

func TestDecodeOIP_errorsNameTheInput(t *testing.T) {
	iris := irisSig()
	in := func(s string) string { return `{"inputs": [` + s + `]}` }
	tests := []struct {
		name, body, column, msg string
	}{
		{"not JSON", `{"inputs": [`, "", "not valid JSON"},
		{"no inputs", `{"id": "1"}`, "", `needs "inputs"`},
		{"unknown input", in(`{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}`), "x", "unknown input; the model takes features (FP32 [-1, 4])"},
		{"wrong datatype", in(`{"name": "features", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]}`), "features", `datatype "FP64"; this input is FP32`},
		{"wrong rank", in(`{"name": "features", "shape": [4], "datatype": "FP32", "data": [1, 2, 3, 4]}`), "features", "a shape of 1 dimensions where the model has [-1, 4]"},
		{"wrong width", in(`{"name": "features", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}`), "features", "a shape with 3 at dimension 1"},
		{"too few values", in(`{"name": "features", "shape": [2, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}`), "features", "4 elements where 8 belong"},
		{"a string for a float", in(`{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, "x", 4]}`), "features", "expected FLOAT (float32)"},
		{"a shape larger than the body", in(`{"name": "features", "shape": [1000000000, 4], "datatype": "FP32", "data": []}`), "features", "more elements than the body"},
		{"a negative size", in(`{"name": "features", "shape": [-1, 4], "datatype": "FP32", "data": []}`), "features", "not a size"},
		{"twice", in(`{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}, {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}`), "features", "given twice"},
		{"no rows", in(`{"name": "features", "shape": [0, 4], "datatype": "FP32", "data": []}`), "", "no rows"},
		{"missing", `{"inputs": []}`, "features", "missing input"},
		{"unknown output", `{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "z"}]}`, "z", "unknown output; the model's outputs are label"},
		{"binary data asked for", `{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "label", "parameters": {"binary_data": true}}]}`, "label", "binary tensor data is not served yet"},
		{"deep data", in(`{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ` + nested(maxDepth+1) + `}`), "", "more than 64 levels deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeOIP([]byte(tt.body), iris, []string{"label"})
			var be *bind.Error
			if !errors.As(err, &be) || be.Column != tt.column || !strings.Contains(be.Err.Error(), tt.msg) {
				t.Fatalf("decodeOIP = %v, want a bind.Error on column %q containing %q", err, tt.column, tt.msg)
			}
		})
	}
}

// FuzzDecodeOIP feeds any body to the inference request reader: a
// refusal is a bind.Error, never a panic, and what it accepts has every
// input, of one batch, with as many elements as its shape.
func FuzzDecodeOIP(f *testing.F) {
	for _, seed := range []string{
		`{"inputs": [{"name": "features", "shape": [2, 4], "datatype": "FP32", "data": [[1, 2, 3, 4], [5, 6, 7, 8]]}]}`,
		`{"id": "x", "inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "label"}]}`,
		`{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}`,
		`{"inputs": [{"name": "features", "shape": [1e9, 4]}]}`,
	} {
		f.Add([]byte(seed))
	}
	sig := irisSig()
	f.Fuzz(func(t *testing.T, body []byte) {
		req, err := decodeOIP(body, sig, []string{"label"})
		if err != nil {
			var be *bind.Error
			if !errors.As(err, &be) {
				t.Fatalf("refused with %T, not a bind.Error: %v", err, err)
			}
			return
		}
		in := req.inputs[0]
		if req.rows <= 0 || in.Rows() != req.rows || len(in.Data.([]float32)) != in.Shape.Elements() {
			t.Fatalf("accepted %q as rows %d, shape %v", body, req.rows, in.Shape)
		}
	})
}
