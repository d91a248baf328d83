package server

import (
	"math"
	"strconv"
	"unicode/utf8"

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
		key := appendString(nil, name)
		e.keys = append(e.keys, append(key, ':'))
	}
	return e
}

// idKey echoes a wide row's _ID.
const idKey = `"_ID":`

func (e *encoder) encode(dst []byte, b *batch, outs []model.Tensor) []byte {
	writers := make([]valueWriter, len(e.pick))
	shapes := make([]model.Shape, len(e.pick))
	sizes := make([]int, len(e.pick))
	for k, i := range e.pick {
		writers[k] = writerFor(outs[i])
		shapes[k] = rowShape(outs[i])
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
			dst = appendValue(dst, writers[k], shapes[k], r*sizes[k])
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

// rowShape is the shape each row's value is written in: none (a scalar)
// when a row holds one value, else the dimensions after the batch.
func rowShape(t model.Tensor) model.Shape {
	if t.RowElements() == 1 {
		return nil
	}
	return t.Shape[1:]
}

// valueWriter appends element i of one tensor.
type valueWriter func(dst []byte, i int) []byte

func appendValue(dst []byte, w valueWriter, shape model.Shape, at int) []byte {
	if len(shape) == 0 {
		return w(dst, at)
	}
	dst = append(dst, '[')
	stride := shape[1:].Elements()
	for k := range int(shape[0]) {
		if k > 0 {
			dst = append(dst, ',')
		}
		dst = appendValue(dst, w, shape[1:], at+k*stride)
	}
	return append(dst, ']')
}

func writerFor(t model.Tensor) valueWriter {
	switch d := t.Data.(type) {
	case []float32:
		return func(dst []byte, i int) []byte { return appendFloat(dst, float64(d[i]), 32) }
	case []float64:
		return func(dst []byte, i int) []byte { return appendFloat(dst, d[i], 64) }
	case []int8:
		return intWriter(d)
	case []int16:
		return intWriter(d)
	case []int32:
		return intWriter(d)
	case []int64:
		return intWriter(d)
	case []uint8:
		return uintWriter(d)
	case []uint16:
		return uintWriter(d)
	case []uint32:
		return uintWriter(d)
	case []uint64:
		return uintWriter(d)
	case []bool:
		return func(dst []byte, i int) []byte { return strconv.AppendBool(dst, d[i]) }
	case []string:
		return func(dst []byte, i int) []byte { return appendString(dst, d[i]) }
	}
	return func(dst []byte, _ int) []byte { return append(dst, "null"...) }
}

func intWriter[T int8 | int16 | int32 | int64](d []T) valueWriter {
	return func(dst []byte, i int) []byte { return strconv.AppendInt(dst, int64(d[i]), 10) }
}

func uintWriter[T uint8 | uint16 | uint32 | uint64](d []T) valueWriter {
	return func(dst []byte, i int) []byte { return strconv.AppendUint(dst, uint64(d[i]), 10) }
}

// appendFloat writes the shortest form that reads back to the same value;
// JSON has no NaN or infinity, so those become null.
func appendFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

const hexDigits = "0123456789abcdef"

// appendString writes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			dst = append(dst, s[start:i]...)
			switch c {
			case '"', '\\':
				dst = append(dst, '\\', c)
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i++
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
