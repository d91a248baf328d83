// Package inferencelog keeps a sample of the requests a server answers
// (every input row, every output, who asked, when, how long it took and
// how it ended) in rolling Parquet files a warehouse can load, listed in
// a manifest once whole; and reads them back, for replay.
package inferencelog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"time"
	"unsafe"

	"github.com/modelserve/modelserve/model"
)

// Record is one request to log: what it asked and what it was answered.
// The log reads its tensors after Add returns: they must not change.
type Record struct {
	Time                               time.Time
	Model, Version, Function, Protocol string
	Principal, QueryID, BatchID        string
	TraceID                            string
	Status                             int
	Error                              string
	Latency                            time.Duration
	// RowIDs number the rows (the gateway's row numbers); nil numbers
	// them from 0.
	RowIDs      []int64
	InputNames  []string
	Inputs      []model.Tensor
	OutputNames []string
	Outputs     []model.Tensor
}

// Rows is the number of input rows the record holds.
func (r *Record) Rows() int {
	if len(r.Inputs) == 0 {
		return 0
	}
	return r.Inputs[0].Rows()
}

// size is the memory a queued record holds (its tensors and a little).
func (r *Record) size() int64 {
	n := int64(512 + len(r.Error))
	for _, t := range r.Inputs {
		n += int64(t.Bytes())
	}
	for _, t := range r.Outputs {
		n += int64(t.Bytes())
	}
	return n
}

// Row is one row of an inference log file: a request's input row with
// its outputs, and the request's own fields repeated on each of its rows
// (a request logged with no rows, a failure before its body was read, is
// one row with no row number, inputs or outputs).
type Row struct {
	Time      time.Time `parquet:"time,timestamp(microsecond)"`
	RequestID string    `parquet:"request_id"`
	Model     string    `parquet:"model,dict"`
	Version   string    `parquet:"version,dict"`
	Function  string    `parquet:"function,dict"`
	Protocol  string    `parquet:"protocol,dict"`
	Principal string    `parquet:"principal,dict"`
	QueryID   string    `parquet:"query_id,optional"`
	BatchID   string    `parquet:"batch_id,optional"`
	TraceID   string    `parquet:"trace_id,optional"`
	Status    int32     `parquet:"status"`
	Error     string    `parquet:"error,optional"`
	LatencyMS float64   `parquet:"latency_ms"`
	// Rows is how many rows the request had; Row this row's number.
	Rows int32  `parquet:"rows"`
	Row  *int64 `parquet:"row,optional"`
	// Inputs and Outputs are JSON objects, a value per input and output
	// (NaN and infinities as null, as answers write them).
	Inputs  string `parquet:"inputs,optional"`
	Outputs string `parquet:"outputs,optional"`
	// InputData is the row's inputs exactly (AppendInputData), what
	// replay runs.
	InputData []byte `parquet:"input_data,optional"`
}

// rows lays a record out as file rows, appended to out. Their text and
// bytes are views of scratch (grown as need be, and returned): valid
// until scratch is used again. The Parquet writer copies what it is
// given, so one buffer serves every record.
func (r *Record) rows(out []Row, id string, scratch []byte) ([]Row, []byte) {
	base := Row{Time: r.Time.UTC(), RequestID: id, Model: r.Model, Version: r.Version, Function: r.Function, Protocol: r.Protocol,
		Principal: r.Principal, QueryID: r.QueryID, BatchID: r.BatchID, TraceID: r.TraceID, Status: int32(r.Status), Error: r.Error,
		LatencyMS: float64(r.Latency.Microseconds()) / 1000, Rows: int32(r.Rows())}
	n := r.Rows()
	if n == 0 {
		return append(out, base), scratch
	}
	in, outs := appendJSONRow(r.InputNames, r.Inputs), appendJSONRow(r.OutputNames, r.Outputs)
	withOutputs := len(r.Outputs) > 0 && r.Outputs[0].Rows() == n
	buf := scratch[:0]
	ends := make([]int, 0, 3*n)
	for i := range n {
		buf = in(buf, i)
		ends = append(ends, len(buf))
		if withOutputs {
			buf = outs(buf, i)
		}
		ends = append(ends, len(buf))
		buf = AppendInputData(buf, r.InputNames, r.Inputs, i)
		ends = append(ends, len(buf))
	}
	text := unsafe.String(unsafe.SliceData(buf), len(buf))
	nums := make([]int64, n)
	at := 0
	for i := range n {
		row := base
		nums[i] = int64(i)
		if i < len(r.RowIDs) {
			nums[i] = r.RowIDs[i]
		}
		row.Row = &nums[i]
		row.Inputs = text[at:ends[3*i]]
		row.Outputs = text[ends[3*i]:ends[3*i+1]]
		row.InputData = buf[ends[3*i+1]:ends[3*i+2]:ends[3*i+2]]
		at = ends[3*i+2]
		out = append(out, row)
	}
	return out, buf
}

// JSONRows writes row i of named tensors as a JSON object, as the log
// writes inputs and outputs.
func JSONRows(names []string, ts []model.Tensor) func(i int) string {
	write := appendJSONRow(names, ts)
	var buf []byte
	return func(i int) string {
		buf = write(buf[:0], i)
		return string(buf)
	}
}

// appendJSONRow appends row i of named tensors as a JSON object.
func appendJSONRow(names []string, ts []model.Tensor) func(dst []byte, i int) []byte {
	writers := make([]model.ValueWriter, len(ts))
	for k, t := range ts {
		writers[k] = model.JSONWriter(t)
	}
	return func(dst []byte, i int) []byte {
		dst = append(dst, '{')
		for k, t := range ts {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = model.AppendJSONString(dst, names[k])
			dst = append(dst, ':')
			dst = model.AppendJSONValue(dst, writers[k], t.Shape[1:], i*t.RowElements())
		}
		return append(dst, '}')
	}
}

// Limits on what a row's input data may claim, so that a damaged file is
// refused rather than sizing memory from it.
const (
	maxInputs      = 1024
	maxDims        = 16
	maxRowElements = 1 << 28
)

// AppendInputData writes row i of the inputs exactly: for each input its
// name, its datatype (DType.String), the row's dimensions and
// its elements in the protocol's binary layout, each part with its
// length first (little-endian).
func AppendInputData(dst []byte, names []string, ts []model.Tensor, i int) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(ts)))
	for k, t := range ts {
		dst = appendString(dst, names[k])
		dst = appendString(dst, t.DType.String())
		dims := t.Shape[1:]
		dst = append(dst, byte(len(dims)))
		for _, d := range dims {
			dst = binary.LittleEndian.AppendUint64(dst, uint64(d))
		}
		at := len(dst)
		dst = binary.LittleEndian.AppendUint32(dst, 0)
		dst = model.AppendBinary(dst, t.SliceRows(i, i+1))
		binary.LittleEndian.PutUint32(dst[at:], uint32(len(dst)-at-4))
	}
	return dst
}

func appendString(dst []byte, s string) []byte {
	dst = binary.LittleEndian.AppendUint16(dst, uint16(len(s)))
	return append(dst, s...)
}

// Input is one input of a logged row: its name and the row as a tensor of
// one row.
type Input struct {
	Name   string
	Tensor model.Tensor
}

var errShort = errors.New("the row's input data ends early")

// ReadInputData reads what AppendInputData wrote, bounded: a damaged row
// is an error, never a panic or a huge allocation.
func ReadInputData(b []byte) ([]Input, error) {
	r := reader{b: b}
	n := int(r.u16())
	if r.err != nil {
		return nil, r.err
	}
	if n > maxInputs {
		return nil, fmt.Errorf("the row claims %d inputs", n)
	}
	out := make([]Input, 0, n)
	for range n {
		name, dt := r.str(), r.str()
		dims := int(r.byte())
		if r.err != nil {
			return nil, r.err
		}
		dtype, err := model.ParseDType(dt)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		if dims > maxDims {
			return nil, fmt.Errorf("input %q claims %d dimensions", name, dims)
		}
		shape := model.Shape{1}
		elements := uint64(1)
		for range dims {
			d := r.u64()
			if r.err != nil {
				return nil, r.err
			}
			elements *= d
			if d > maxRowElements || elements > maxRowElements {
				return nil, fmt.Errorf("input %q claims a row of more than %d elements", name, maxRowElements)
			}
			shape = append(shape, int64(d))
		}
		size := int(r.u32())
		data := r.take(size)
		if r.err != nil {
			return nil, r.err
		}
		if fixed := dtype.Size(); fixed > 0 && dtype != model.String && dtype != model.Bool && uint64(size) != uint64(fixed)*elements {
			return nil, fmt.Errorf("input %q: %d bytes for %d elements of %s", name, size, elements, dt)
		}
		if dtype == model.String && uint64(size) < 4*elements {
			return nil, fmt.Errorf("input %q: %d bytes for %d strings", name, size, elements)
		}
		if dtype == model.Bool && uint64(size) != elements {
			return nil, fmt.Errorf("input %q: %d bytes for %d booleans", name, size, elements)
		}
		t, err := model.NewTensor(dtype, shape)
		if err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		if err := model.ReadBinary(t, data); err != nil {
			return nil, fmt.Errorf("input %q: %w", name, err)
		}
		out = append(out, Input{Name: name, Tensor: t})
	}
	if len(r.b) > 0 {
		return nil, fmt.Errorf("%d bytes left after the row's inputs", len(r.b))
	}
	return out, nil
}

// reader takes little-endian parts off a byte slice; the first shortfall
// sticks as err.
type reader struct {
	b   []byte
	err error
}

func (r *reader) take(n int) []byte {
	if r.err != nil || n < 0 || n > len(r.b) {
		if r.err == nil {
			r.err = errShort
		}
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) byte() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.take(2); b != nil {
		return binary.LittleEndian.Uint16(b)
	}
	return 0
}

func (r *reader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.LittleEndian.Uint32(b)
	}
	return 0
}

func (r *reader) u64() uint64 {
	if b := r.take(8); b != nil {
		return binary.LittleEndian.Uint64(b)
	}
	return math.MaxUint64
}

func (r *reader) str() string { return string(r.take(int(r.u16()))) }
