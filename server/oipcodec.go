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
	// binary says, per output asked for (per fetched output when all),
	// whether it is answered as binary data.
	binary []bool
	// bin is what is left of the binary section, for the inputs still
	// to read.
	bin []byte
	// borrow says the inputs may be the binary data itself, where its
	// layout allows: the bytes stay as they are until the rows have run.
	// borrowed says some are.
	borrow, borrowed bool
}

// asked are the fetched outputs the answer holds, as indexes: those asked
// for, else all n.
func (r *oipRequest) asked(n int) []int {
	if r.outputs != nil {
		return r.outputs
	}
	all := make([]int, n)
	for i := range all {
		all[i] = i
	}
	return all
}

// oipParams are the parameters this server reads: the binary data
// extension's. Others are accepted and ignored.
type oipParams struct {
	binaryOutput, binary *bool
	binarySize           int64 // -1: none
}

// decodeOIP reads an inference request for a model of signature sig whose
// workers fetch the outputs fetched; headerLen, when not 0, is where the
// JSON ends and the binary data begins.
func decodeOIP(body []byte, headerLen int, sig model.Signature, fetched []string, borrow bool) (*oipRequest, error) {
	var bin []byte
	if headerLen > 0 {
		if headerLen > len(body) {
			return nil, inputErr(-1, "", "%s is %d; the body has %d bytes", InferenceHeaderLength, headerLen, len(body))
		}
		body, bin = body[:headerLen], body[headerLen:]
	}
	s := &scanner{b: body}
	if s.kind() != kindObject {
		if probe := *s; probe.skip() != nil || probe.end() != nil {
			return nil, inputErr(-1, "", "the body is not valid JSON")
		}
		return nil, inputErr(-1, "", `the body must be an inference request, {"inputs": [...]}, got %s`, s.describe())
	}
	req := &oipRequest{inputs: make([]model.Tensor, len(sig.Inputs)), rows: -1, bin: bin, borrow: borrow}
	f, err := s.fields("id", "inputs", "outputs", "parameters")
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, asInputError(err)
	}
	inputs, outputs, params := f[1], f[2], f[3]
	if req.id, err = stringField(f[0], `"id"`); err != nil {
		return nil, asInputError(err)
	}
	binaryOut := false
	if params != nil {
		p, err := readOIPParams(params, "")
		if err != nil {
			return nil, err
		}
		if p.binaryOutput != nil {
			binaryOut = *p.binaryOutput
		}
	}
	if inputs == nil || inputs.kind() != kindArray {
		return nil, inputErr(-1, "", `the request needs "inputs", an array of tensors`)
	}
	err = inputs.elements(func(int) error {
		if inputs.kind() != kindObject {
			return inputErr(-1, "", `each of "inputs" must be an object, got %s`, inputs.describe())
		}
		return req.input(inputs, sig, len(body)+len(bin))
	})
	if err != nil {
		return nil, asInputError(err)
	}
	if err := req.complete(sig); err != nil {
		return nil, err
	}
	if len(req.bin) > 0 {
		return nil, inputErr(-1, "", "%d bytes of binary data that no input's binary_data_size claims", len(req.bin))
	}
	if outputs != nil {
		if req.outputs, req.binary, err = readOIPOutputs(outputs, fetched, binaryOut); err != nil {
			return nil, asInputError(err)
		}
	} else {
		req.binary = make([]bool, len(fetched))
		for i := range req.binary {
			req.binary[i] = binaryOut
		}
	}
	return req, nil
}

// spec finds the input a tensor names, given once, of the input's
// datatype: its index in the signature.
func (r *oipRequest) spec(sig model.Signature, name, datatype string) (int, error) {
	i := slices.IndexFunc(sig.Inputs, func(in model.Spec) bool { return in.Name == name })
	switch {
	case name == "":
		return 0, inputErr(-1, "", `an input has no "name"`)
	case i < 0:
		return 0, inputErr(-1, name, "unknown input; the model takes %s", oipInputs(sig))
	case r.inputs[i].Data != nil:
		return 0, inputErr(-1, name, "given twice")
	case datatype != sig.Inputs[i].DType.OIP():
		return 0, inputErr(-1, name, "datatype %q; this input is %s", datatype, sig.Inputs[i].DType.OIP())
	}
	return i, nil
}

// alloc allocates an input's tensor of a checked shape, whose batch must
// be the other inputs'.
func (r *oipRequest) alloc(spec model.Spec, shape model.Shape) (model.Tensor, error) {
	if err := r.batch(spec, shape); err != nil {
		return model.Tensor{}, err
	}
	t, err := model.NewTensor(spec.DType, shape)
	if err != nil {
		return model.Tensor{}, inputErr(-1, spec.Name, "%v", err)
	}
	return t, nil
}

// batch checks that an input has the rows the others have.
func (r *oipRequest) batch(spec model.Spec, shape model.Shape) error {
	switch {
	case r.rows < 0:
		r.rows = int(shape[0])
	case int(shape[0]) != r.rows:
		return inputErr(-1, spec.Name, "a batch of %d where the other inputs have %d", shape[0], r.rows)
	}
	return nil
}

// binaryInput is an input's tensor from its binary data: the bytes
// themselves when the request may borrow them and their layout allows,
// else a copy.
func (r *oipRequest) binaryInput(spec model.Spec, shape model.Shape, raw []byte) (model.Tensor, error) {
	if r.borrow {
		if t, ok := viewBinary(spec.DType, shape, raw); ok {
			r.borrowed = true
			return t, r.batch(spec, shape)
		}
	}
	t, err := r.alloc(spec, shape)
	if err != nil {
		return model.Tensor{}, err
	}
	if err := model.ReadBinary(t, raw); err != nil {
		return model.Tensor{}, inputErr(-1, spec.Name, "%v (shape %s)", err, oipShape(shape))
	}
	return t, nil
}

// complete checks that every input came, with rows.
func (r *oipRequest) complete(sig model.Signature) error {
	for i, in := range sig.Inputs {
		if r.inputs[i].Data == nil {
			return inputErr(-1, in.Name, "missing input; the model takes %s", oipInputs(sig))
		}
	}
	if r.rows == 0 {
		return inputErr(-1, "", "the request holds no rows (a batch dimension of 0)")
	}
	return nil
}

// askOutput adds the fetched output name to those asked for, once.
func askOutput(asked []int, fetched []string, name string) ([]int, error) {
	k := slices.Index(fetched, name)
	switch {
	case k < 0:
		return asked, inputErr(-1, name, "unknown output; the model's outputs are %s", strings.Join(fetched, ", "))
	case slices.Contains(asked, k):
		return asked, inputErr(-1, name, "asked for twice")
	}
	return append(asked, k), nil
}

// input reads one input tensor, the scanner on its object: its members
// may come in any order, so their places are noted first.
func (r *oipRequest) input(s *scanner, sig model.Signature, bodyLen int) error {
	f, err := s.fields("name", "datatype", "shape", "data", "parameters")
	if err != nil {
		return err
	}
	shapeAt, dataAt, paramsAt := f[2], f[3], f[4]
	name, err := stringField(f[0], `an input's "name"`)
	if err != nil {
		return inputErr(-1, "", "%v", err)
	}
	datatype, err := stringField(f[1], `an input's "datatype"`)
	if err != nil {
		return inputErr(-1, name, "%v", err)
	}
	params := oipParams{binarySize: -1}
	if paramsAt != nil {
		if params, err = readOIPParams(paramsAt, name); err != nil {
			return err
		}
	}
	i, err := r.spec(sig, name, datatype)
	if err != nil {
		return err
	}
	spec := sig.Inputs[i]
	switch {
	case shapeAt == nil:
		return inputErr(-1, name, `an input needs a "shape"`)
	case params.binarySize >= 0 && dataAt != nil:
		return inputErr(-1, name, `an input has "data" or a binary_data_size, not both`)
	case params.binarySize < 0 && dataAt == nil:
		return inputErr(-1, name, `an input needs "data" (or, with binary data, a binary_data_size)`)
	}
	shape, err := readOIPShape(shapeAt, spec.Shape, bodyLen)
	if err != nil {
		return inputErr(-1, name, "%v", err)
	}
	if params.binarySize >= 0 {
		if params.binarySize > int64(len(r.bin)) {
			return inputErr(-1, name, "binary_data_size %d; %d bytes of binary data are left", params.binarySize, len(r.bin))
		}
		raw := r.bin[:params.binarySize]
		r.bin = r.bin[params.binarySize:]
		if r.inputs[i], err = r.binaryInput(spec, shape, raw); err != nil {
			return err
		}
		return nil
	}
	t, err := r.alloc(spec, shape)
	if err != nil {
		return err
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

// readOIPShape reads an input's shape (checkOIPShape checks it).
func readOIPShape(s *scanner, want model.Shape, bodyLen int) (model.Shape, error) {
	if s.kind() != kindArray {
		return nil, fmt.Errorf("the shape must be an array of sizes, got %s", s.describe())
	}
	var shape model.Shape
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
		shape = append(shape, n)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return shape, checkOIPShape(shape, want, bodyLen)
}

// checkOIPShape checks a request's shape against the signature's (its
// rank, its fixed dimensions, the batch first). A shape cannot promise
// more elements than limit, the bytes the request has: each takes one at
// least.
func checkOIPShape(shape, want model.Shape, limit int) error {
	if len(shape) != len(want) {
		return fmt.Errorf("a shape of %d dimensions where the model has %s (the batch first)", len(shape), oipShape(want))
	}
	elements := int64(1)
	for k, n := range shape {
		switch {
		case n < 0:
			return fmt.Errorf("the shape's dimension %d is %d, not a size", k, n)
		case want[k] >= 0 && n != want[k]:
			return fmt.Errorf("a shape with %d at dimension %d where the model has %s", n, k, oipShape(want))
		case n > 0 && elements > int64(limit)/n:
			return fmt.Errorf("a shape of more elements than the request's %d bytes can hold", limit)
		}
		elements *= n
	}
	return nil
}

// readOIPOutputs reads the outputs asked for, each one the model's
// workers fetch, none twice, and whether each is answered as binary data
// (binaryOut unless its parameters say).
func readOIPOutputs(s *scanner, fetched []string, binaryOut bool) ([]int, []bool, error) {
	if s.kind() != kindArray {
		return nil, nil, inputErr(-1, "", `"outputs" must be an array of {"name": ...}, got %s`, s.describe())
	}
	out, binary := []int{}, []bool{}
	err := s.elements(func(int) error {
		if s.kind() != kindObject {
			return inputErr(-1, "", `each of "outputs" must be an object, got %s`, s.describe())
		}
		f, err := s.fields("name", "parameters")
		if err != nil {
			return err
		}
		name, err := stringField(f[0], `an output's "name"`)
		if err != nil {
			return inputErr(-1, "", "%v", err)
		}
		paramsAt := f[1]
		asBinary := binaryOut
		if paramsAt != nil {
			p, err := readOIPParams(paramsAt, name)
			if err != nil {
				return err
			}
			if p.binary != nil {
				asBinary = *p.binary
			}
		}
		if out, err = askOutput(out, fetched, name); err != nil {
			return err
		}
		binary = append(binary, asBinary)
		return nil
	})
	return out, binary, err
}

// readOIPParams reads a parameters object: the binary data extension's
// are checked and kept, any other is accepted and ignored.
func readOIPParams(s *scanner, column string) (oipParams, error) {
	p := oipParams{binarySize: -1}
	if s.kind() != kindObject {
		return p, inputErr(-1, column, `"parameters" must be an object, got %s`, s.describe())
	}
	probe := *s
	err := probe.members(func(key []byte) error {
		switch k := string(key); k {
		case "binary_data_output", "binary_data":
			if probe.kind() != kindBool {
				return inputErr(-1, column, "%s must be true or false, got %s", k, probe.describe())
			}
			lit, err := probe.literal()
			v := lit == "true"
			if k == "binary_data" {
				p.binary = &v
			} else {
				p.binaryOutput = &v
			}
			return err
		case "binary_data_size":
			b, err := probe.number()
			if err != nil {
				return inputErr(-1, column, "binary_data_size must be a size: %v", err)
			}
			n, err := strconv.ParseInt(string(b), 10, 64)
			if err != nil || n < 0 {
				return inputErr(-1, column, "binary_data_size %s is not a size", b)
			}
			p.binarySize = n
			return nil
		}
		return probe.skip()
	})
	return p, err
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
// fetched ones by default), each whole with its shape, data flat, or, for
// those asked for as binary, its size in the JSON and its data after it.
// headerLen is where the JSON ends when some output is binary, else 0.
func encodeOIP(dst []byte, name, version string, req *oipRequest, fetched []string, outs []model.Tensor) (body []byte, headerLen int) {
	dst = append(dst, `{"model_name":`...)
	dst = model.AppendJSONString(dst, name)
	dst = append(dst, `,"model_version":`...)
	dst = model.AppendJSONString(dst, version)
	if req.id != "" {
		dst = append(dst, `,"id":`...)
		dst = model.AppendJSONString(dst, req.id)
	}
	dst = append(dst, `,"outputs":[`...)
	which := req.asked(len(fetched))
	var binaries []model.Tensor
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
		if n < len(req.binary) && req.binary[n] {
			dst = append(dst, `],"parameters":{"binary_data_size":`...)
			dst = strconv.AppendInt(dst, int64(model.BinarySize(t)), 10)
			dst = append(dst, "}}"...)
			binaries = append(binaries, t)
			continue
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
	dst = append(dst, "]}"...)
	if len(binaries) == 0 {
		return dst, 0
	}
	headerLen = len(dst)
	for _, t := range binaries {
		dst = model.AppendBinary(dst, t)
	}
	return dst, headerLen
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
