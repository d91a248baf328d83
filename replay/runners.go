package replay

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/model"
)

// Admitter is a loaded version's queue (engine.Version).
type Admitter interface {
	Admit(bodyBytes int64) (*engine.Ticket, error)
}

// Local runs requests through a version loaded here, by its signature.
type Local struct {
	Queue     Admitter
	Signature model.Signature
}

// Run puts the logged inputs in the version's order, checked against its
// signature, and runs them.
func (l Local) Run(ctx context.Context, names []string, inputs []model.Tensor) ([]string, []model.Tensor, error) {
	ordered := make([]model.Tensor, len(l.Signature.Inputs))
	var size int64
	for i, in := range l.Signature.Inputs {
		k := slices.Index(names, in.Name)
		if k < 0 {
			return nil, nil, fmt.Errorf("the version takes an input %q the log does not have (logged: %v)", in.Name, names)
		}
		if inputs[k].DType != in.DType {
			return nil, nil, fmt.Errorf("input %q was logged as %s; the version takes %s", in.Name, inputs[k].DType, in.DType)
		}
		ordered[i] = inputs[k]
		size += int64(inputs[k].Bytes())
	}
	ticket, err := l.Queue.Admit(size)
	if err != nil {
		return nil, nil, err
	}
	defer ticket.Done()
	outs, err := ticket.Run(ctx, ordered)
	if err != nil {
		return nil, nil, err
	}
	return l.Signature.FetchedOutputs(), outs, nil
}

// maxAnswerBytes bounds a server's answer to one replayed request.
const maxAnswerBytes = 1 << 30

// Remote runs requests on a running server, over the Open Inference
// Protocol with binary inputs (exactly as logged) and JSON outputs.
type Remote struct {
	Client *http.Client
	// URL is the server's; Model and Version (optional) the model asked.
	URL, Model, Version string
	// Token, when set, is sent as a bearer token.
	Token string
}

type oipInput struct {
	Name       string         `json:"name"`
	Datatype   string         `json:"datatype"`
	Shape      []int64        `json:"shape"`
	Parameters map[string]int `json:"parameters"`
}

type oipOutput struct {
	Name     string          `json:"name"`
	Datatype string          `json:"datatype"`
	Shape    []int64         `json:"shape"`
	Data     json.RawMessage `json:"data"`
}

// Run sends one request and reads its outputs back as tensors.
func (r Remote) Run(ctx context.Context, names []string, inputs []model.Tensor) ([]string, []model.Tensor, error) {
	header := struct {
		Inputs []oipInput `json:"inputs"`
	}{}
	var data []byte
	for k, t := range inputs {
		n := len(data)
		data = model.AppendBinary(data, t)
		header.Inputs = append(header.Inputs, oipInput{Name: names[k], Datatype: t.DType.OIP(), Shape: t.Shape,
			Parameters: map[string]int{"binary_data_size": len(data) - n}})
	}
	h, err := json.Marshal(header)
	if err != nil {
		return nil, nil, err
	}
	path := "/v2/models/" + url.PathEscape(r.Model)
	if r.Version != "" {
		path += "/versions/" + url.PathEscape(r.Version)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.URL+path+"/infer", bytes.NewReader(append(h, data...)))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Inference-Header-Content-Length", strconv.Itoa(len(h)))
	if r.Token != "" {
		req.Header.Set("Authorization", "Bearer "+r.Token)
	}
	client := r.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBytes+1))
	if err != nil {
		return nil, nil, err
	}
	if len(body) > maxAnswerBytes {
		return nil, nil, fmt.Errorf("the answer is over %d bytes", maxAnswerBytes)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, nil, fmt.Errorf("the server answered %d: %.500s", resp.StatusCode, body)
	}
	var ans struct{ Outputs []oipOutput }
	if err := json.Unmarshal(body, &ans); err != nil {
		return nil, nil, fmt.Errorf("the server's answer is not the protocol's: %w", err)
	}
	outNames := make([]string, len(ans.Outputs))
	outs := make([]model.Tensor, len(ans.Outputs))
	for i, o := range ans.Outputs {
		t, err := tensorOf(o)
		if err != nil {
			return nil, nil, fmt.Errorf("output %q: %w", o.Name, err)
		}
		outNames[i], outs[i] = o.Name, t
	}
	return outNames, outs, nil
}

// tensorOf reads an answer's output into a tensor of its datatype. Its
// numbers were written from the tensor's own type, shortest first, so
// they read back to the same values (NaN and infinities come as null:
// NaN).
func tensorOf(o oipOutput) (model.Tensor, error) {
	dt, err := model.ParseOIP(o.Datatype)
	shape := model.Shape(o.Shape)
	if err != nil || len(shape) == 0 || shape.Elements() < 0 || shape.Elements() > 1<<28 {
		return model.Tensor{}, fmt.Errorf("datatype %q shape %v: not an output replay reads", o.Datatype, o.Shape)
	}
	t, err := model.NewTensor(dt, shape)
	if err != nil {
		return t, err
	}
	switch d := t.Data.(type) {
	case []string:
		var v []string
		if err := json.Unmarshal(o.Data, &v); err != nil || len(v) != len(d) {
			return t, fmt.Errorf("%d strings for %d elements: %v", len(v), len(d), err)
		}
		copy(d, v)
		return t, nil
	case []bool:
		var v []bool
		if err := json.Unmarshal(o.Data, &v); err != nil || len(v) != len(d) {
			return t, fmt.Errorf("%d booleans for %d elements: %v", len(v), len(d), err)
		}
		copy(d, v)
		return t, nil
	}
	var v []*json.Number
	if err := json.Unmarshal(o.Data, &v); err != nil || len(v) != shape.Elements() {
		return t, fmt.Errorf("%d numbers for %d elements: %v", len(v), shape.Elements(), err)
	}
	bits := 64
	if dt == model.Float32 || dt == model.Float16 {
		bits = 32
	}
	for i, n := range v {
		if err := setNumber(t, i, n, bits); err != nil {
			return t, fmt.Errorf("element %d: %w", i, err)
		}
	}
	return t, nil
}

// setNumber sets element i of t from a JSON number (nil: NaN, for the
// floating types).
func setNumber(t model.Tensor, i int, n *json.Number, bits int) error {
	if n == nil {
		switch d := t.Data.(type) {
		case []float32:
			d[i] = float32(math.NaN())
		case []float64:
			d[i] = math.NaN()
		case []model.Half:
			d[i] = model.ToHalf(math.NaN())
		default:
			return fmt.Errorf("null in an integer output")
		}
		return nil
	}
	if t.DType.IsFloat() {
		f, err := strconv.ParseFloat(n.String(), bits)
		if err != nil {
			return err
		}
		switch d := t.Data.(type) {
		case []float32:
			d[i] = float32(f)
		case []float64:
			d[i] = f
		case []model.Half:
			d[i] = model.ToHalf(f)
		}
		return nil
	}
	if strings.HasPrefix(n.String(), "-") {
		v, err := strconv.ParseInt(n.String(), 10, 64)
		if err != nil {
			return err
		}
		return setInt(t, i, v, 0, true)
	}
	v, err := strconv.ParseUint(n.String(), 10, 64)
	if err != nil {
		return err
	}
	return setInt(t, i, 0, v, false)
}

func setInt(t model.Tensor, i int, s int64, u uint64, signed bool) error {
	if !signed {
		if u > math.MaxInt64 {
			d, ok := t.Data.([]uint64)
			if !ok {
				return fmt.Errorf("%d is out of range", u)
			}
			d[i] = u
			return nil
		}
		s = int64(u)
	}
	switch d := t.Data.(type) {
	case []int8:
		d[i] = int8(s)
	case []int16:
		d[i] = int16(s)
	case []int32:
		d[i] = int32(s)
	case []int64:
		d[i] = s
	case []uint8:
		d[i] = uint8(s)
	case []uint16:
		d[i] = uint16(s)
	case []uint32:
		d[i] = uint32(s)
	case []uint64:
		d[i] = uint64(s)
	default:
		return fmt.Errorf("an integer in a %s output", t.DType)
	}
	return nil
}
