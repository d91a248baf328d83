package server

import (
	"fmt"
	"math"

	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/oip"
)

// The Open Inference Protocol's gRPC messages to tensors and back: an
// input's data comes as raw bytes (raw_input_contents, the binary
// extension's layout) or as the typed contents of its datatype.

// grpcRequest turns a ModelInferRequest into the model's inputs and the
// outputs asked for, as decodeOIP does for a REST request.
func grpcRequest(r *oip.ModelInferRequest, sig model.Signature, fetched []string) (*oipRequest, error) {
	// The raw contents are the message's own bytes (protobuf copies them
	// out of the read buffer): the inputs may be those bytes.
	req := &oipRequest{id: r.GetId(), inputs: make([]model.Tensor, len(sig.Inputs)), rows: -1, borrow: true}
	raw := r.GetRawInputContents()
	if len(raw) > 0 && len(raw) != len(r.GetInputs()) {
		return nil, inputErr(-1, "", "%d raw_input_contents for %d inputs; give one per input, in order", len(raw), len(r.GetInputs()))
	}
	for k, in := range r.GetInputs() {
		name := in.GetName()
		i, err := req.spec(sig, name, in.GetDatatype())
		if err != nil {
			return nil, err
		}
		spec := sig.Inputs[i]
		shape := model.Shape(in.GetShape())
		// Each element takes a byte at least, raw or typed.
		limit := contentsLen(in.GetContents())
		if len(raw) > 0 {
			limit = len(raw[k])
		}
		if err := checkOIPShape(shape, spec.Shape, limit); err != nil {
			return nil, inputErr(-1, name, "%v", err)
		}
		if len(raw) > 0 {
			if contentsLen(in.GetContents()) > 0 {
				return nil, inputErr(-1, name, "contents and raw_input_contents; give one or the other")
			}
			if req.inputs[i], err = req.binaryInput(spec, shape, raw[k]); err != nil {
				return nil, err
			}
			continue
		}
		t, err := req.alloc(spec, shape)
		if err != nil {
			return nil, err
		}
		if err := fromContents(t, in.GetContents()); err != nil {
			return nil, inputErr(-1, name, "%v (shape %s)", err, oipShape(shape))
		}
		req.inputs[i] = t
	}
	if err := req.complete(sig); err != nil {
		return nil, err
	}
	if outs := r.GetOutputs(); len(outs) > 0 {
		req.outputs = []int{}
		for _, o := range outs {
			var err error
			if req.outputs, err = askOutput(req.outputs, fetched, o.GetName()); err != nil {
				return nil, err
			}
		}
	}
	return req, nil
}

// contentsLen is how many elements typed contents hold, all kinds
// together.
func contentsLen(c *oip.InferTensorContents) int {
	return len(c.GetBoolContents()) + len(c.GetIntContents()) + len(c.GetInt64Contents()) + len(c.GetUintContents()) +
		len(c.GetUint64Contents()) + len(c.GetFp32Contents()) + len(c.GetFp64Contents()) + len(c.GetBytesContents())
}

// fromContents fills t from the typed contents of its datatype: exactly
// as many as its shape holds, each within the type's range.
func fromContents(t model.Tensor, c *oip.InferTensorContents) error {
	n := t.Shape.Elements()
	count := func(have int, field string) error {
		if have != n || contentsLen(c) != have {
			return fmt.Errorf("%d values in %s (and %d in other contents) where the shape holds %d", have, field, contentsLen(c)-have, n)
		}
		return nil
	}
	switch d := t.Data.(type) {
	case []bool:
		if err := count(len(c.GetBoolContents()), "bool_contents"); err != nil {
			return err
		}
		copy(d, c.GetBoolContents())
	case []float32:
		if err := count(len(c.GetFp32Contents()), "fp32_contents"); err != nil {
			return err
		}
		copy(d, c.GetFp32Contents())
	case []float64:
		if err := count(len(c.GetFp64Contents()), "fp64_contents"); err != nil {
			return err
		}
		copy(d, c.GetFp64Contents())
	case []int64:
		if err := count(len(c.GetInt64Contents()), "int64_contents"); err != nil {
			return err
		}
		copy(d, c.GetInt64Contents())
	case []uint64:
		if err := count(len(c.GetUint64Contents()), "uint64_contents"); err != nil {
			return err
		}
		copy(d, c.GetUint64Contents())
	case []int8:
		return narrow(d, c.GetIntContents(), math.MinInt8, math.MaxInt8, t.DType, count)
	case []int16:
		return narrow(d, c.GetIntContents(), math.MinInt16, math.MaxInt16, t.DType, count)
	case []int32:
		return narrow(d, c.GetIntContents(), math.MinInt32, math.MaxInt32, t.DType, count)
	case []uint8:
		return narrow(d, c.GetUintContents(), 0, math.MaxUint8, t.DType, count)
	case []uint16:
		return narrow(d, c.GetUintContents(), 0, math.MaxUint16, t.DType, count)
	case []uint32:
		return narrow(d, c.GetUintContents(), 0, math.MaxUint32, t.DType, count)
	case []model.Half:
		return fmt.Errorf("FP16 has no typed contents: send it in raw_input_contents")
	case []string:
		if err := count(len(c.GetBytesContents()), "bytes_contents"); err != nil {
			return err
		}
		for i, b := range c.GetBytesContents() {
			d[i] = string(b)
		}
	default:
		return fmt.Errorf("no contents for %s", t.DType)
	}
	return nil
}

// narrow copies the protocol's wider typed contents into a narrower
// element type, each value within its range.
func narrow[T int8 | int16 | int32 | uint8 | uint16 | uint32, W int32 | uint32](d []T, src []W, lo, hi int64, dt model.DType, count func(int, string) error) error {
	field := "int_contents"
	if dt.OIP()[0] == 'U' {
		field = "uint_contents"
	}
	if err := count(len(src), field); err != nil {
		return err
	}
	for i, v := range src {
		if int64(v) < lo || int64(v) > hi {
			return fmt.Errorf("element %d: %d is out of range for %s", i, v, dt.OIP())
		}
		d[i] = T(v)
	}
	return nil
}

// toContents writes t as the typed contents of its datatype.
func toContents(t model.Tensor) *oip.InferTensorContents {
	c := &oip.InferTensorContents{}
	switch d := t.Data.(type) {
	case []bool:
		c.BoolContents = d
	case []float32:
		c.Fp32Contents = d
	case []float64:
		c.Fp64Contents = d
	case []int64:
		c.Int64Contents = d
	case []uint64:
		c.Uint64Contents = d
	case []int8:
		c.IntContents = widen[int32](d)
	case []int16:
		c.IntContents = widen[int32](d)
	case []int32:
		c.IntContents = d
	case []uint8:
		c.UintContents = widen[uint32](d)
	case []uint16:
		c.UintContents = widen[uint32](d)
	case []uint32:
		c.UintContents = d
	case []string:
		c.BytesContents = make([][]byte, len(d))
		for i, s := range d {
			c.BytesContents[i] = []byte(s)
		}
	}
	return c
}

func widen[W int32 | uint32, T int8 | int16 | uint8 | uint16](d []T) []W {
	out := make([]W, len(d))
	for i, v := range d {
		out[i] = W(v)
	}
	return out
}
