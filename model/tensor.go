package model

import (
	"fmt"
	"strconv"
	"strings"
)

// Shape lists a tensor's dimensions; in a signature, -1 marks a dimension
// the model leaves open (the batch, a sequence length).
type Shape []int64

func (s Shape) String() string {
	parts := make([]string, len(s))
	for i, d := range s {
		if d < 0 {
			parts[i] = "?"
		} else {
			parts[i] = strconv.FormatInt(d, 10)
		}
	}
	return "[" + strings.Join(parts, ", ") + "]"
}

// Elements is the product of the dimensions; open dimensions count as zero.
func (s Shape) Elements() int {
	n := 1
	for _, d := range s {
		if d < 0 {
			return 0
		}
		n *= int(d)
	}
	return n
}

// Tensor is a dense, row-major tensor whose first dimension is the batch.
// Data is a slice of the Go type matching DType ([]float32 for Float32, and
// so on) of exactly Shape.Elements() values.
type Tensor struct {
	DType DType
	Shape Shape
	Data  any
}

// NewTensor allocates a zeroed tensor.
func NewTensor(dtype DType, shape Shape) (Tensor, error) {
	n := shape.Elements()
	var data any
	switch dtype {
	case Float32:
		data = make([]float32, n)
	case Float64:
		data = make([]float64, n)
	case Int8:
		data = make([]int8, n)
	case Int16:
		data = make([]int16, n)
	case Int32:
		data = make([]int32, n)
	case Int64:
		data = make([]int64, n)
	case Uint8:
		data = make([]uint8, n)
	case Uint16:
		data = make([]uint16, n)
	case Uint32:
		data = make([]uint32, n)
	case Uint64:
		data = make([]uint64, n)
	case Bool:
		data = make([]bool, n)
	case String:
		data = make([]string, n)
	case Float16:
		data = make([]Half, n)
	default:
		return Tensor{}, fmt.Errorf("cannot allocate a tensor of %s", dtype)
	}
	return Tensor{DType: dtype, Shape: shape, Data: data}, nil
}

// Rows is the size of the batch dimension.
func (t Tensor) Rows() int {
	if len(t.Shape) == 0 {
		return 0
	}
	return int(t.Shape[0])
}

// RowElements is the number of values each row holds.
func (t Tensor) RowElements() int {
	if len(t.Shape) == 0 {
		return 1
	}
	return t.Shape[1:].Elements()
}

// Bytes estimates the memory the tensor's data takes.
func (t Tensor) Bytes() int {
	n := t.Shape.Elements() * t.DType.Size()
	if s, ok := t.Data.([]string); ok {
		for _, v := range s {
			n += len(v)
		}
	}
	return n
}

// SliceRows returns rows [lo, hi) as a view sharing t's memory.
func (t Tensor) SliceRows(lo, hi int) Tensor {
	per := t.RowElements()
	shape := append(Shape{int64(hi - lo)}, t.Shape[1:]...)
	a, b := lo*per, hi*per
	var data any
	switch d := t.Data.(type) {
	case []float32:
		data = d[a:b]
	case []float64:
		data = d[a:b]
	case []int8:
		data = d[a:b]
	case []int16:
		data = d[a:b]
	case []int32:
		data = d[a:b]
	case []int64:
		data = d[a:b]
	case []uint8:
		data = d[a:b]
	case []uint16:
		data = d[a:b]
	case []uint32:
		data = d[a:b]
	case []uint64:
		data = d[a:b]
	case []bool:
		data = d[a:b]
	case []string:
		data = d[a:b]
	case []Half:
		data = d[a:b]
	}
	return Tensor{DType: t.DType, Shape: shape, Data: data}
}

// ConcatRows joins tensors of one dtype and row shape along the batch.
func ConcatRows(parts []Tensor) (Tensor, error) {
	if len(parts) == 0 {
		return Tensor{}, fmt.Errorf("nothing to concatenate")
	}
	if len(parts) == 1 {
		return parts[0], nil
	}
	first := parts[0]
	rows := 0
	for i, p := range parts {
		if p.DType != first.DType || !sameDims(p.Shape[1:], first.Shape[1:]) {
			return Tensor{}, fmt.Errorf("part %d is %s%s, part 0 is %s%s", i, p.DType, p.Shape, first.DType, first.Shape)
		}
		rows += p.Rows()
	}
	out, err := NewTensor(first.DType, append(Shape{int64(rows)}, first.Shape[1:]...))
	if err != nil {
		return Tensor{}, err
	}
	at := 0
	for _, p := range parts {
		at += copyData(out.Data, p.Data, at)
	}
	return out, nil
}

func sameDims(a, b Shape) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// CopyRows copies src's rows into the first rows of dst, which has room
// for them and the same dtype and row shape.
func CopyRows(dst, src Tensor) {
	copyData(dst.Data, src.Data, 0)
}

// copyData copies src into dst from element at; both hold the same type.
func copyData(dst, src any, at int) int {
	switch d := dst.(type) {
	case []float32:
		return copy(d[at:], src.([]float32))
	case []float64:
		return copy(d[at:], src.([]float64))
	case []int8:
		return copy(d[at:], src.([]int8))
	case []int16:
		return copy(d[at:], src.([]int16))
	case []int32:
		return copy(d[at:], src.([]int32))
	case []int64:
		return copy(d[at:], src.([]int64))
	case []uint8:
		return copy(d[at:], src.([]uint8))
	case []uint16:
		return copy(d[at:], src.([]uint16))
	case []uint32:
		return copy(d[at:], src.([]uint32))
	case []uint64:
		return copy(d[at:], src.([]uint64))
	case []bool:
		return copy(d[at:], src.([]bool))
	case []string:
		return copy(d[at:], src.([]string))
	case []Half:
		return copy(d[at:], src.([]Half))
	}
	return 0
}
