package server

import (
	"strconv"
	"sync"

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
	// bufs hold the parts of a large answer encoded in parallel.
	bufs sync.Pool
}

func newEncoder(fn model.Function, fetched []string) *encoder {
	e := &encoder{bufs: sync.Pool{New: func() any { return new([]byte) }}}
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

// encodePartElems is the least output elements a part of an answer
// encoded in parallel holds: about a tenth of a millisecond of writing.
const encodePartElems = 8 << 10

func (e *encoder) encode(dst []byte, b *batch, outs []model.Tensor) []byte {
	return e.encodeIn(dst, b, outs, 0)
}

// encodeIn encodes in most parts at most (0: as many as cores are idle;
// tests set it).
func (e *encoder) encodeIn(dst []byte, b *batch, outs []model.Tensor, most int) []byte {
	w := e.writers(outs)
	dst = append(dst, `{"data":[`...)
	rows := len(b.rowIDs)
	elems := 0
	for _, n := range w.sizes {
		elems += max(n, 1)
	}
	if most == 0 && rows*elems >= 2*encodePartElems {
		most = min(maxParts, 1+idleCores())
	}
	n := min(max(most, 1), rows*elems/encodePartElems)
	if n < 2 {
		dst = e.rows(dst, w, b, 0, rows)
		return append(dst, "]}"...)
	}
	// A large answer's rows in parts, on the idle cores, each into its
	// own buffer, joined in order.
	bufs := make([]*[]byte, n)
	var wg sync.WaitGroup
	for k := 1; k < n; k++ {
		wg.Go(func() {
			buf := e.bufs.Get().(*[]byte)
			*buf = e.rows((*buf)[:0], w, b, k*rows/n, (k+1)*rows/n)
			bufs[k] = buf
		})
	}
	dst = e.rows(dst, w, b, 0, rows/n)
	wg.Wait()
	for _, buf := range bufs[1:] {
		dst = append(dst, *buf...)
		e.bufs.Put(buf)
	}
	return append(dst, "]}"...)
}

// outputWriters are what writes each picked output's rows.
type outputWriters struct {
	writers []model.ValueWriter
	shapes  []model.Shape
	sizes   []int
}

func (e *encoder) writers(outs []model.Tensor) outputWriters {
	w := outputWriters{make([]model.ValueWriter, len(e.pick)), make([]model.Shape, len(e.pick)), make([]int, len(e.pick))}
	for k, i := range e.pick {
		w.writers[k] = model.JSONWriter(outs[i])
		w.shapes[k] = model.JSONRowShape(outs[i])
		w.sizes[k] = outs[i].RowElements()
	}
	return w
}

// rows appends rows lo to hi, each after a comma but the first of all.
func (e *encoder) rows(dst []byte, w outputWriters, b *batch, lo, hi int) []byte {
	for r := lo; r < hi; r++ {
		if r > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, '[')
		dst = strconv.AppendInt(dst, b.rowIDs[r], 10)
		dst = append(dst, ",{"...)
		for k := range e.pick {
			if k > 0 {
				dst = append(dst, ',')
			}
			dst = append(dst, e.keys[k]...)
			dst = model.AppendJSONValue(dst, w.writers[k], w.shapes[k], r*w.sizes[k])
		}
		if b.echo != nil && b.echo[r] != nil {
			dst = append(dst, ',')
			dst = append(dst, idKey...)
			dst = append(dst, b.echo[r]...)
		}
		dst = append(dst, "}]"...)
	}
	return dst
}
