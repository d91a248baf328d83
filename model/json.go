package model

import (
	"math"
	"strconv"
	"unicode/utf8"
)

// JSONRowShape is the shape each row's value is written in: none (a scalar)
// when a row holds one value, else the dimensions after the batch.
func JSONRowShape(t Tensor) Shape {
	if t.RowElements() == 1 {
		return nil
	}
	return t.Shape[1:]
}

// ValueWriter appends element i of one tensor.
type ValueWriter func(dst []byte, i int) []byte

// AppendJSONValue writes the value at element at in the given shape: a
// scalar for no shape, else nested arrays.
func AppendJSONValue(dst []byte, w ValueWriter, shape Shape, at int) []byte {
	if len(shape) == 0 {
		return w(dst, at)
	}
	dst = append(dst, '[')
	stride := shape[1:].Elements()
	for k := range int(shape[0]) {
		if k > 0 {
			dst = append(dst, ',')
		}
		dst = AppendJSONValue(dst, w, shape[1:], at+k*stride)
	}
	return append(dst, ']')
}

// JSONWriter writes t's elements as JSON values.
func JSONWriter(t Tensor) ValueWriter {
	switch d := t.Data.(type) {
	case []float32:
		return func(dst []byte, i int) []byte { return AppendJSONFloat(dst, float64(d[i]), 32) }
	case []float64:
		return func(dst []byte, i int) []byte { return AppendJSONFloat(dst, d[i], 64) }
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
		return func(dst []byte, i int) []byte { return AppendJSONString(dst, d[i]) }
	case []Half:
		return func(dst []byte, i int) []byte { return AppendJSONFloat(dst, float64(d[i].Float32()), 32) }
	}
	return func(dst []byte, _ int) []byte { return append(dst, "null"...) }
}

func intWriter[T int8 | int16 | int32 | int64](d []T) ValueWriter {
	return func(dst []byte, i int) []byte { return strconv.AppendInt(dst, int64(d[i]), 10) }
}

func uintWriter[T uint8 | uint16 | uint32 | uint64](d []T) ValueWriter {
	return func(dst []byte, i int) []byte { return strconv.AppendUint(dst, uint64(d[i]), 10) }
}

// AppendJSONFloat writes the shortest form that reads back to the same value;
// JSON has no NaN or infinity, so those become null.
func AppendJSONFloat(dst []byte, f float64, bits int) []byte {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return append(dst, "null"...)
	}
	return strconv.AppendFloat(dst, f, 'g', -1, bits)
}

const hexDigits = "0123456789abcdef"

// AppendJSONString writes s as a JSON string; invalid UTF-8 becomes U+FFFD.
func AppendJSONString(dst []byte, s string) []byte {
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

// MaxNesting bounds how deeply the arrays and objects (or YAML's sequences
// and mappings) that a caller or a file supplies may nest. Deeper input is
// refused, never recursed into; a tensor's values nest no deeper than its
// shape, which is far below this.
const MaxNesting = 64

// Nesting measures, without recursion, how deeply the arrays and objects
// of JSON text nest, up to limit+1: past that it stops, and at is the byte
// where it went past. Strings are passed over whole; nothing else is
// checked, so the text must still be parsed.
func Nesting(b []byte, limit int) (depth, at int) {
	level := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
		case '[', '{':
			level++
			if level > depth {
				depth = level
				if depth > limit {
					return depth, i
				}
			}
		case ']', '}':
			level--
		}
	}
	return depth, -1
}
