package server

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"google.golang.org/protobuf/proto"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/oip"
)

func TestFromContents_narrowsWithinRange(t *testing.T) {
	tests := []struct {
		dt   model.DType
		c    *oip.InferTensorContents
		want string // the tensor's data, or the error
	}{
		{model.Int8, &oip.InferTensorContents{IntContents: []int32{-128, 127}}, "[-128 127]"},
		{model.Int8, &oip.InferTensorContents{IntContents: []int32{-129, 0}}, "element 0: -129 is out of range for INT8"},
		{model.Int16, &oip.InferTensorContents{IntContents: []int32{-32768, 40000}}, "element 1: 40000 is out of range for INT16"},
		{model.Uint16, &oip.InferTensorContents{UintContents: []uint32{65535, 0}}, "[65535 0]"},
		{model.Uint8, &oip.InferTensorContents{UintContents: []uint32{256, 0}}, "out of range for UINT8"},
		{model.Uint32, &oip.InferTensorContents{UintContents: []uint32{4294967295, 1}}, "[4294967295 1]"},
		{model.Uint64, &oip.InferTensorContents{Uint64Contents: []uint64{1 << 63, 2}}, "[9223372036854775808 2]"},
		{model.Float32, &oip.InferTensorContents{Fp32Contents: []float32{1}}, "1 values in fp32_contents (and 0 in other contents) where the shape holds 2"},
		{model.Float32, &oip.InferTensorContents{Fp32Contents: []float32{1, 2}, Int64Contents: []int64{3}}, "2 values in fp32_contents (and 1 in other contents)"},
		{model.String, &oip.InferTensorContents{BytesContents: [][]byte{[]byte("a"), {}}}, "[a ]"},
		{model.Float16, &oip.InferTensorContents{Fp32Contents: []float32{1, 2}}, "FP16 has no typed contents"},
	}
	for _, tt := range tests {
		tensor, _ := model.NewTensor(tt.dt, model.Shape{2})
		err := fromContents(tensor, tt.c)
		got := ""
		if err != nil {
			got = err.Error()
		} else {
			got = fmt.Sprint(tensor.Data)
		}
		if !strings.Contains(got, tt.want) {
			t.Errorf("%s %v: %s, want %s", tt.dt, tt.c, got, tt.want)
		}
		if err == nil && tt.dt != model.String {
			// And back: the same contents.
			back := toContents(tensor)
			if contentsLen(back) != 2 {
				t.Errorf("%s written back as %v", tt.dt, back)
			}
		}
	}
}

// FuzzGRPCRequest feeds any message bytes, as a gRPC client could send
// them, to the ModelInferRequest reader: a refusal is a bind.Error, never
// a panic, and an accepted request has every input of its shape.
func FuzzGRPCRequest(f *testing.F) {
	seed := func(r *oip.ModelInferRequest) {
		b, _ := proto.Marshal(r)
		f.Add(b)
	}
	seed(&oip.ModelInferRequest{ModelName: "m", Inputs: []*oip.ModelInferRequest_InferInputTensor{
		{Name: "text", Datatype: "BYTES", Shape: []int64{1}, Contents: &oip.InferTensorContents{BytesContents: [][]byte{[]byte("a")}}},
		{Name: "emb", Datatype: "FP32", Shape: []int64{1, 3}, Contents: &oip.InferTensorContents{Fp32Contents: []float32{1, 2, 3}}},
		{Name: "flag", Datatype: "BOOL", Shape: []int64{1}, Contents: &oip.InferTensorContents{BoolContents: []bool{true}}},
		{Name: "small", Datatype: "INT8", Shape: []int64{1}, Contents: &oip.InferTensorContents{IntContents: []int32{3}}},
		{Name: "pixels", Datatype: "FP64", Shape: []int64{1, 2, 2}, Contents: &oip.InferTensorContents{Fp64Contents: []float64{1, 2, 3, 4}}},
		{Name: "tokens", Datatype: "INT64", Shape: []int64{1, 2}, Contents: &oip.InferTensorContents{Int64Contents: []int64{1, 2}}},
	}})
	seed(&oip.ModelInferRequest{ModelName: "m", Inputs: []*oip.ModelInferRequest_InferInputTensor{{Name: "text", Datatype: "BYTES", Shape: []int64{1}}},
		RawInputContents: [][]byte{{1, 0, 0, 0, 'a'}}})
	sig := mixedSig()
	f.Fuzz(func(t *testing.T, b []byte) {
		var r oip.ModelInferRequest
		if proto.Unmarshal(b, &r) != nil {
			return
		}
		req, err := grpcRequest(&r, sig, []string{"y"})
		if err != nil {
			var be *bind.Error
			if !errors.As(err, &be) {
				t.Fatalf("refused with %T, not a bind.Error: %v", err, err)
			}
			return
		}
		for i, in := range req.inputs {
			if in.Rows() != req.rows || in.Shape.Elements() != in.Rows()*in.RowElements() {
				t.Fatalf("input %d accepted with shape %v for %d rows", i, in.Shape, req.rows)
			}
		}
	})
}
