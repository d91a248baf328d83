package server

import (
	"strconv"

	"github.com/modelserve/modelserve/model"
)

// encoder writes one function's outputs in the external-function format:
// {"data": [[row, {"output": value, ...}], ...]}, one row per input row,
// with the caller's row numbers in the caller's order.
type encoder struct {
	// keys are the function's output names, escaped once: `"label":`.
	keys [][]byte
	// pick is, per function output, its index among the outputs the
	// workers fetch.
	pick []int
}

func newEncoder(fn model.Function, fetched []string) *encoder {
	e := &encoder{}
	for _, name := range fn.Outputs {
		for i, f := range fetched {
			if f == name {
				e.pick = append(e.pick, i)
			}
		}
		key := model.AppendJSONString(nil, name)
		e.keys = append(e.keys, append(key, ':'))
	}
	return e
}

// idKey echoes a wide row's _ID.
const idKey = `"_ID":`

func (e *encoder) encode(dst []byte, b *batch, outs []model.Tensor) []byte {
	writers := make([]model.ValueWriter, len(e.pick))
	shapes := make([]model.Shape, len(e.pick))
	sizes := make([]int, len(e.pick))
	for k, i := range e.pick {
		writers[k] = model.JSONWriter(outs[i])
		shapes[k] = model.JSONRowShape(outs[i])
		sizes[k] = outs[i].RowElements()
	}
	dst = append(dst, `{"data":[`...)
	for r, id := range b.rowIDs {
		if r > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		dst = strconv.AppendInt(dst, id, 10)
		dst = append(dst, ",{"...)
		for k := range e.pick {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, e.keys[k]...)
			dst = model.AppendJSONValue(dst, writers[k], shapes[k], r*sizes[k])
		}
		if b.echo != nil && b.echo[r] != nil {
			dst = append(dst, ',')
			dst = append(dst, idKey...)
			dst = append(dst, b.echo[r]...)
		}
		dst = append(dst, "}]"...)
	}
	return append(dst, "]}"...)
}
