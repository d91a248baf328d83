package server

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
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
	req, err := decodeOIP([]byte(body), 0, sig, []string{"y"}, false)
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
	gotB, n := encodeOIP(nil, "mixed", "3", req, []string{"y"}, []model.Tensor{out})
	got := string(gotB)
	if n != 0 {
		t.Errorf("a JSON answer with a binary header length %d", n)
	}
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
		{"a shape larger than the body", in(`{"name": "features", "shape": [1000000000, 4], "datatype": "FP32", "data": []}`), "features", "more elements than the request's 92 bytes can hold"},
		{"a negative size", in(`{"name": "features", "shape": [-1, 4], "datatype": "FP32", "data": []}`), "features", "not a size"},
		{"twice", in(`{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}, {"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}`), "features", "given twice"},
		{"no rows", in(`{"name": "features", "shape": [0, 4], "datatype": "FP32", "data": []}`), "", "no rows"},
		{"missing", `{"inputs": []}`, "features", "missing input"},
		{"unknown output", `{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "z"}]}`, "z", "unknown output; the model's outputs are label"},
		{"binary_data not a boolean", `{"inputs": [{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4]}], "outputs": [{"name": "label", "parameters": {"binary_data": 1}}]}`, "label", "binary_data must be true or false"},
		{"binary size without binary data", in(`{"name": "features", "shape": [1, 4], "datatype": "FP32", "parameters": {"binary_data_size": 16}}`), "features", "16; 0 bytes of binary data are left"},
		{"data and a binary size", in(`{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3, 4], "parameters": {"binary_data_size": 0}}`), "features", "not both"},
		{"deep data", in(`{"name": "features", "shape": [1, 4], "datatype": "FP32", "data": ` + nested(maxDepth+1) + `}`), "", "more than 64 levels deep"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decodeOIP([]byte(tt.body), 0, iris, []string{"label"}, false)
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
		req, err := decodeOIP(body, 0, sig, []string{"label"}, false)
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

// binaryRequest is an inference request whose inputs all come as binary
// data, as the binary data extension lays them out.
func binaryRequest(t *testing.T, header string, blobs ...[]byte) ([]byte, int) {
	t.Helper()
	body := []byte(header)
	for _, b := range blobs {
		body = append(body, b...)
	}
	return body, len(header)
}

func le32(vs ...uint32) []byte {
	var b []byte
	for _, v := range vs {
		b = binary.LittleEndian.AppendUint32(b, v)
	}
	return b
}

func TestDecodeOIP_binaryDataBothWays(t *testing.T) {
	sig := mixedSig()
	strs := append(append(le32(1), 'a'), append(le32(3), "xyz"...)...)
	emb := le32(math.Float32bits(0.5), math.Float32bits(1), math.Float32bits(1.5), math.Float32bits(2), math.Float32bits(2.5), math.Float32bits(3))
	pixels := make([]byte, 0, 64)
	for i := range 8 {
		pixels = binary.LittleEndian.AppendUint64(pixels, math.Float64bits(float64(i+1)))
	}
	tokens := make([]byte, 0, 32)
	for _, v := range []int64{1, -2, 3, 4} {
		tokens = binary.LittleEndian.AppendUint64(tokens, uint64(v))
	}
	header := `{"inputs": [
		{"name": "text", "shape": [2], "datatype": "BYTES", "parameters": {"binary_data_size": 12}},
		{"name": "emb", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": 24}},
		{"name": "flag", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}},
		{"name": "small", "shape": [2], "datatype": "INT8", "data": [-1, 1]},
		{"name": "pixels", "shape": [2, 2, 2], "datatype": "FP64", "parameters": {"binary_data_size": 64}},
		{"name": "tokens", "shape": [2, 2], "datatype": "INT64", "parameters": {"binary_data_size": 32}}
	], "parameters": {"binary_data_output": true}}`
	body, n := binaryRequest(t, header, strs, emb, []byte{1, 0}, pixels, tokens)
	req, err := decodeOIP(body, n, sig, []string{"y"}, false)
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []any{[]string{"a", "xyz"}, []float32{0.5, 1, 1.5, 2, 2.5, 3}, []bool{true, false}, []int8{-1, 1},
		[]float64{1, 2, 3, 4, 5, 6, 7, 8}, []int64{1, -2, 3, 4}} {
		got, _ := json.Marshal(req.inputs[i].Data)
		w, _ := json.Marshal(want)
		if string(got) != string(w) {
			t.Errorf("input %s = %s, want %s", sig.Inputs[i].Name, got, w)
		}
	}
	if !slices.Equal(req.binary, []bool{true}) {
		t.Errorf("binary outputs %v", req.binary)
	}
	out, _ := model.NewTensor(model.String, model.Shape{2})
	out.Data.([]string)[0], out.Data.([]string)[1] = "ok", ""
	answer, headerLen := encodeOIP(nil, "mixed", "1", req, []string{"y"}, []model.Tensor{out})
	wantJSON := `{"model_name":"mixed","model_version":"1","outputs":[{"name":"y","datatype":"BYTES","shape":[2],"parameters":{"binary_data_size":10}}]}`
	if string(answer[:headerLen]) != wantJSON || string(answer[headerLen:]) != string(append(append(le32(2), "ok"...), le32(0)...)) {
		t.Errorf("binary answer %q (header %d)", answer, headerLen)
	}

	for _, tt := range []struct {
		name string
		blob []byte
		size int
		msg  string
	}{
		{"too few bytes for the shape", emb[:20], 20, "20 bytes of binary data where 6 elements of FP32 take 24"},
		{"a string past the end", le32(9), 4, "element 0 claims 9 bytes; 0 are left"},
		{"bytes left over", emb, 24, "24 bytes of binary data that no input"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			input := `{"name": "emb", "shape": [2, 3], "datatype": "FP32", "parameters": {"binary_data_size": ` + strconv.Itoa(tt.size) + `}}`
			sig := model.Signature{Inputs: []model.Spec{{Name: "emb", DType: model.Float32, Shape: model.Shape{-1, 3}}}}
			extra := tt.blob
			if tt.name == "a string past the end" {
				input = `{"name": "s", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 4}}`
				sig = model.Signature{Inputs: []model.Spec{{Name: "s", DType: model.String, Shape: model.Shape{-1}}}}
			}
			if tt.name == "bytes left over" {
				extra = append(slices.Clone(emb), emb...)
			}
			body, n := binaryRequest(t, `{"inputs": [`+input+`]}`, extra)
			_, err := decodeOIP(body, n, sig, nil, false)
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("got %v, want %q", err, tt.msg)
			}
		})
	}
}

// FuzzDecodeOIPBinary feeds any JSON header and binary section to the
// binary data extension's reader: refused with a bind.Error or accepted
// with every input of its shape, never a panic; reading the inputs in
// place from the body gives the same tensors, or the same error, as
// copying them.
func FuzzDecodeOIPBinary(f *testing.F) {
	f.Add(`{"inputs": [{"name": "text", "shape": [1], "datatype": "BYTES", "parameters": {"binary_data_size": 5}}]}`, append(le32(1), 'a'))
	f.Add(`{"inputs": [{"name": "emb", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]}`, make([]byte, 12))
	f.Add(`{"inputs": [{"name": "flag", "shape": [2], "datatype": "BOOL", "parameters": {"binary_data_size": 2}}]}`, []byte{1, 7})
	sig := mixedSig()
	f.Fuzz(func(t *testing.T, header string, blob []byte) {
		body := append([]byte(header), blob...)
		for _, n := range []int{len(header), len(body) + 1} {
			req, err := decodeOIP(body, n, sig, []string{"y"}, false)
			borrowed, berr := decodeOIP(body, n, sig, []string{"y"}, true)
			if fmt.Sprint(err) != fmt.Sprint(berr) {
				t.Fatalf("copied: %v; read in place: %v", err, berr)
			}
			if err != nil {
				var be *bind.Error
				if !errors.As(err, &be) {
					t.Fatalf("refused with %T, not a bind.Error: %v", err, err)
				}
				continue
			}
			for i, in := range req.inputs {
				if in.Rows() != req.rows || in.Shape.Elements() != in.Rows()*in.RowElements() {
					t.Fatalf("input %d accepted with shape %v for %d rows", i, in.Shape, req.rows)
				}
				if b := borrowed.inputs[i]; !sameData(b, in) || !slices.Equal(b.Shape, in.Shape) || b.DType != in.DType {
					t.Fatalf("input %d read in place differs from its copy", i)
				}
			}
		}
	})
}

// sameData compares tensors' elements bit for bit (a NaN is its own).
func sameData(a, b model.Tensor) bool {
	if x, y := model.TensorBytes(a), model.TensorBytes(b); x != nil || y != nil {
		return bytes.Equal(x, y)
	}
	return reflect.DeepEqual(a.Data, b.Data)
}

// TestDecodeOIP_readsAlignedBinaryInPlace: an input whose binary data is
// aligned for its elements is that data, not a copy; one that is not is
// copied, with the same values.
func TestDecodeOIP_readsAlignedBinaryInPlace(t *testing.T) {
	sig := model.Signature{Inputs: []model.Spec{{Name: "emb", DType: model.Float32, Shape: model.Shape{-1, 3}}}}
	emb := le32(math.Float32bits(0.5), math.Float32bits(1), math.Float32bits(1.5))
	for pad := range 8 {
		header := `{"inputs": [{"name": "emb", "shape": [1, 3], "datatype": "FP32", "parameters": {"binary_data_size": 12}}]}` + strings.Repeat(" ", pad)
		for _, borrow := range []bool{false, true} {
			// A fresh buffer, as the body pool's: aligned for any element.
			body, n := binaryRequest(t, header, emb)
			body = append(make([]byte, 0, len(body)), body...)
			req, err := decodeOIP(body, n, sig, []string{"y"}, borrow)
			if err != nil {
				t.Fatal(err)
			}
			got := req.inputs[0].Data.([]float32)
			if !slices.Equal(got, []float32{0.5, 1, 1.5}) {
				t.Fatalf("pad %d: emb = %v", pad, got)
			}
			inPlace := borrow && n%4 == 0
			if req.borrowed != inPlace {
				t.Errorf("pad %d, borrow %v: borrowed = %v, want %v", pad, borrow, req.borrowed, inPlace)
			}
			binary.LittleEndian.PutUint32(body[n:], math.Float32bits(9))
			if changed := got[0] == 9; changed != inPlace {
				t.Errorf("pad %d, borrow %v: the tensor follows the body: %v, want %v", pad, borrow, changed, inPlace)
			}
		}
	}
}

func TestDecodeOIP_halfPrecisionAsJSONAndBinary(t *testing.T) {
	sig := model.Signature{Inputs: []model.Spec{{Name: "x", DType: model.Float16, Shape: model.Shape{-1, 2}}}}
	req, err := decodeOIP([]byte(`{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP16", "data": [0.1, 70000]}]}`), 0, sig, nil, false)
	if err != nil {
		t.Fatal(err)
	}
	if got := req.inputs[0].Data.([]model.Half); got[0] != 0x2e66 || got[1] != 0x7c00 {
		t.Errorf("JSON FP16 = %#04x", got)
	}
	header := `{"inputs": [{"name": "x", "shape": [1, 2], "datatype": "FP16", "parameters": {"binary_data_size": 4}}]}`
	body, n := binaryRequest(t, header, []byte{0x66, 0x2e, 0x00, 0x3c})
	if req, err = decodeOIP(body, n, sig, nil, false); err != nil {
		t.Fatal(err)
	}
	if got := req.inputs[0].Data.([]model.Half); got[0] != 0x2e66 || got[1] != 0x3c00 {
		t.Errorf("binary FP16 = %#04x", got)
	}
	if got := model.AppendBinary(nil, req.inputs[0]); string(got) != string([]byte{0x66, 0x2e, 0x00, 0x3c}) || model.BinarySize(req.inputs[0]) != 4 {
		t.Errorf("FP16 written back as %v", got)
	}
}
