package server

import (
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/modelserve/modelserve/model"
)

// The Open Inference Protocol's (KServe v2) JSON inference request and
// response. A request carries whole tensors, the batch dimension first:
// {"id": ..., "inputs": [{"name", "shape", "datatype", "data"}, ...],
// "outputs": [{"name"}, ...]}, data row-major, nested to the shape or
// flat. It is read with the gateway decoder's scanner and value rules, so
// a hostile body is bounded the same way (depth, size, element count).

// oipRequest is a decoded inference request.
type oipRequest struct {
	id     string
	inputs []model.Tensor // in the signature's order
	rows   int
	// outputs are the fetched outputs asked for, as indexes into the
	// signature's fetched outputs, in the order asked; nil: all.
	outputs []int
}

// decodeOIP reads an inference request for a model of signature sig whose
// workers fetch the outputs fetched.
func decodeOIP(body []byte, sig model.Signature, fetched []string) (*oipRequest, error) {
	s := &scanner{b: body}
	if s.kind() != kindObject {
		if probe := *s; probe.skip() != nil || probe.end() != nil {
			return nil, inputErr(-1, "", "the body is not valid JSON")
		}
		return nil, inputErr(-1, "", `the body must be an inference request, {"inputs": [...]}, got %s`, s.describe())
	}
	req := &oipRequest{inputs: make([]model.Tensor, len(sig.Inputs)), rows: -1}
	var inputs, outputs, params *scanner
	err := s.members(func(key []byte) error {
		at := *s
		switch string(key) {
		case "id":
			if s.kind() != kindString {
				return inputErr(-1, "", `"id" must be a string, got %s`, s.describe())
			}
			b, err := s.str()
			req.id = string(b)
			return err
		case "inputs":
			inputs = &at
		case "outputs":
			outputs = &at
		case "parameters":
			params = &at
		}
		return s.skip()
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, asInputError(err)
	}
	if params != nil {
		if err := checkOIPParams(params, ""); err != nil {
			return nil, err
		}
	}
	if inputs == nil || inputs.kind() != kindArray {
		return nil, inputErr(-1, "", `the request needs "inputs", an array of tensors`)
	}
	err = inputs.elements(func(int) error {
		if inputs.kind() != kindObject {
			return inputErr(-1, "", `each of "inputs" must be an object, got %s`, inputs.describe())
		}
		return req.input(inputs, sig, len(body))
	})
	if err != nil {
		return nil, asInputError(err)
	}
	for i, in := range sig.Inputs {
		if req.inputs[i].Data == nil {
			return nil, inputErr(-1, in.Name, "missing input; the model takes %s", oipInputs(sig))
		}
	}
	if req.rows == 0 {
		return nil, inputErr(-1, "", "the request holds no rows (a batch dimension of 0)")
	}
	if outputs != nil {
		if req.outputs, err = readOIPOutputs(outputs, fetched); err != nil {
			return nil, asInputError(err)
		}
	}
	return req, nil
}

// input reads one input tensor, the scanner on its object: its members
// may come in any order, so their places are noted first.
func (r *oipRequest) input(s *scanner, sig model.Signature, bodyLen int) error {
	var name, datatype string
	var shapeAt, dataAt *scanner
	err := s.members(func(key []byte) error {
		at := *s
		switch string(key) {
		case "name", "datatype":
			if s.kind() != kindString {
				return inputErr(-1, "", "an input's %q must be a string, got %s", key, s.describe())
			}
			b, err := s.str()
			if string(key) == "name" {
				name = string(b)
			} else {
				datatype = string(b)
			}
			return err
		case "shape":
			shapeAt = &at
		case "data":
			dataAt = &at
		case "parameters":
			if err := checkOIPParams(&at, name); err != nil {
				return err
			}
		}
		return s.skip()
	})
	if err != nil {
		return err
	}
	i := slices.IndexFunc(sig.Inputs, func(in model.Spec) bool { return in.Name == name })
	switch {
	case name == "":
		return inputErr(-1, "", `an input has no "name"`)
	case i < 0:
		return inputErr(-1, name, "unknown input; the model takes %s", oipInputs(sig))
	case r.inputs[i].Data != nil:
		return inputErr(-1, name, "given twice")
	}
	spec := sig.Inputs[i]
	if datatype != spec.DType.OIP() {
		return inputErr(-1, name, "datatype %q; this input is %s", datatype, spec.DType.OIP())
	}
	if shapeAt == nil || dataAt == nil {
		return inputErr(-1, name, `an input needs "shape" and "data"`)
	}
	shape, err := readOIPShape(shapeAt, spec.Shape, bodyLen)
	if err != nil {
		return inputErr(-1, name, "%v", err)
	}
	switch {
	case r.rows < 0:
		r.rows = int(shape[0])
	case int(shape[0]) != r.rows:
		return inputErr(-1, name, "a batch of %d where the other inputs have %d", shape[0], r.rows)
	}
	t, err := model.NewTensor(spec.DType, shape)
	if err != nil {
		return inputErr(-1, name, "%v", err)
	}
	if shape.Elements() > 0 {
		if err := fillArray(dataAt, newColumn(t, decodeOptions{}), 0, shape); err != nil {
			return inputErr(-1, name, "%v (shape %s)", err, oipShape(shape))
		}
	} else if n, err := dataAt.count(); err != nil || n != 0 {
		return inputErr(-1, name, "data for a shape of no elements (%s)", oipShape(shape))
	}
	r.inputs[i] = t
	return nil
}

// readOIPShape reads an input's shape and checks it against the
// signature's (its rank, its fixed dimensions). A shape cannot promise
// more elements than the body has bytes: each takes one at least.
func readOIPShape(s *scanner, want model.Shape, bodyLen int) (model.Shape, error) {
	if s.kind() != kindArray {
		return nil, fmt.Errorf("the shape must be an array of sizes, got %s", s.describe())
	}
	var shape model.Shape
	elements := int64(1)
	err := s.elements(func(k int) error {
		if k >= len(want) {
			return fmt.Errorf("the shape has more than the %d dimensions of %s", len(want), oipShape(want))
		}
		b, err := s.number()
		if err != nil {
			return fmt.Errorf("the shape must hold sizes: %w", err)
		}
		n, err := strconv.ParseInt(string(b), 10, 64)
		if err != nil || n < 0 {
			return fmt.Errorf("the shape's dimension %d is %s, not a size", k, b)
		}
		if want[k] >= 0 && n != want[k] {
			return fmt.Errorf("a shape with %d at dimension %d where the model has %s", n, k, oipShape(want))
		}
		if n > 0 && elements > int64(bodyLen)/n {
			return fmt.Errorf("a shape of more elements than the body's %d bytes can hold", bodyLen)
		}
		elements *= n
		shape = append(shape, n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(shape) != len(want) {
		return nil, fmt.Errorf("a shape of %d dimensions where the model has %s (the batch first)", len(shape), oipShape(want))
	}
	return shape, nil
}

// readOIPOutputs reads the outputs asked for, each one the model's
// workers fetch, none twice.
func readOIPOutputs(s *scanner, fetched []string) ([]int, error) {
	if s.kind() != kindArray {
		return nil, inputErr(-1, "", `"outputs" must be an array of {"name": ...}, got %s`, s.describe())
	}
	out := []int{}
	err := s.elements(func(int) error {
		if s.kind() != kindObject {
			return inputErr(-1, "", `each of "outputs" must be an object, got %s`, s.describe())
		}
		name := ""
		err := s.members(func(key []byte) error {
			switch string(key) {
			case "name":
				if s.kind() != kindString {
					return inputErr(-1, "", `an output's "name" must be a string, got %s`, s.describe())
				}
				b, err := s.str()
				name = string(b)
				return err
			case "parameters":
				at := *s
				if err := checkOIPParams(&at, name); err != nil {
					return err
				}
			}
			return s.skip()
		})
		if err != nil {
			return err
		}
		k := slices.Index(fetched, name)
		switch {
		case k < 0:
			return inputErr(-1, name, "unknown output; the model's outputs are %s", strings.Join(fetched, ", "))
		case slices.Contains(out, k):
			return inputErr(-1, name, "asked for twice")
		}
		out = append(out, k)
		return nil
	})
	return out, err
}

// checkOIPParams accepts parameters this server has no use for, and
// refuses those that ask for what it does not do yet: binary tensor data.
func checkOIPParams(s *scanner, column string) error {
	if s.kind() != kindObject {
		return inputErr(-1, column, `"parameters" must be an object, got %s`, s.describe())
	}
	probe := *s
	return probe.members(func(key []byte) error {
		k := string(key)
		if strings.HasPrefix(k, "binary_data") && probe.kind() == kindBool {
			lit, err := probe.literal()
			if err == nil && lit == "true" {
				return inputErr(-1, column, "%s: binary tensor data is not served yet; send JSON data (binary_data: false)", k)
			}
			return err
		}
		return probe.skip()
	})
}

// oipInputs lists a signature's inputs as an inference request names them.
func oipInputs(sig model.Signature) string {
	parts := make([]string, len(sig.Inputs))
	for i, in := range sig.Inputs {
		parts[i] = fmt.Sprintf("%s (%s %s)", in.Name, in.DType.OIP(), oipShape(in.Shape))
	}
	return strings.Join(parts, ", ")
}

// encodeOIP writes an inference response: the outputs asked for (all the
// fetched ones by default), each whole with its shape, data flat.
func encodeOIP(dst []byte, name, version string, req *oipRequest, fetched []string, outs []model.Tensor) []byte {
	dst = append(dst, `{"model_name":`...)
	dst = model.AppendJSONString(dst, name)
	dst = append(dst, `,"model_version":`...)
	dst = model.AppendJSONString(dst, version)
	if req.id != "" {
		dst = append(dst, `,"id":`...)
		dst = model.AppendJSONString(dst, req.id)
	}
	dst = append(dst, `,"outputs":[`...)
	which := req.outputs
	if which == nil {
		which = make([]int, len(fetched))
		for i := range which {
			which[i] = i
		}
	}
	for n, k := range which {
		if n > 0 {
			dst = append(dst, ',')
		}
		t := outs[k]
		dst = append(dst, `{"name":`...)
		dst = model.AppendJSONString(dst, fetched[k])
		dst = append(dst, `,"datatype":"`...)
		dst = append(dst, t.DType.OIP()...)
		dst = append(dst, `","shape":[`...)
		for d, size := range t.Shape {
			if d > 0 {
				dst = append(dst, ',')
			}
			dst = strconv.AppendInt(dst, size, 10)
		}
		dst = append(dst, `],"data":[`...)
		w := model.JSONWriter(t)
		for i := range t.Shape.Elements() {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = w(dst, i)
		}
		dst = append(dst, "]}"...)
	}
	return append(dst, "]}"...)
}

// oipShape writes a shape as the protocol does: [-1, 4].
func oipShape(s model.Shape) string {
	b := []byte{'['}
	for i, d := range s {
		if i > 0 {
			b = append(b, ", "...)
		}
		b = strconv.AppendInt(b, d, 10)
	}
	return string(append(b, ']'))
}
