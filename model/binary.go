package model

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// The Open Inference Protocol's binary layout of a tensor's elements:
// row-major and little-endian, BOOL one byte each, BYTES each a 4-byte
// little-endian length and its bytes. The protocol's binary extension
// and the inference log both write it.

// littleEndian is whether tensors are laid out in memory as the wire
// lays them out, so a fixed-size tensor is one copy.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// WireLayout reports whether tensors lie in memory as the binary layout
// lays them out (this machine is little-endian), so a fixed-size tensor
// is one copy, or none.
func WireLayout() bool { return littleEndian }

// TensorBytes is a fixed-size tensor's memory, as bytes.
func TensorBytes(t Tensor) []byte {
	switch d := t.Data.(type) {
	case []float32:
		return asBytes(d)
	case []float64:
		return asBytes(d)
	case []int8:
		return asBytes(d)
	case []int16:
		return asBytes(d)
	case []int32:
		return asBytes(d)
	case []int64:
		return asBytes(d)
	case []uint8:
		return d
	case []uint16:
		return asBytes(d)
	case []uint32:
		return asBytes(d)
	case []uint64:
		return asBytes(d)
	case []Half:
		return asBytes(d)
	}
	return nil
}

func asBytes[T int8 | int16 | int32 | int64 | uint16 | uint32 | uint64 | float32 | float64 | Half](d []T) []byte {
	if len(d) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(d)*int(unsafe.Sizeof(zero)))
}

// ReadBinary fills t from raw, the input's binary data.
func ReadBinary(t Tensor, raw []byte) error {
	n := t.Shape.Elements()
	switch d := t.Data.(type) {
	case []bool:
		if len(raw) != n {
			return fmt.Errorf("%d bytes of binary data for %d BOOL elements", len(raw), n)
		}
		for i, b := range raw {
			d[i] = b != 0
		}
		return nil
	case []string:
		for i := range d {
			if len(raw) < 4 {
				return fmt.Errorf("the binary data ends at element %d of %d (BYTES: a 4-byte length, then the bytes)", i, n)
			}
			size := binary.LittleEndian.Uint32(raw)
			if uint64(size) > uint64(len(raw)-4) {
				return fmt.Errorf("element %d claims %d bytes; %d are left", i, size, len(raw)-4)
			}
			d[i] = string(raw[4 : 4+size])
			raw = raw[4+size:]
		}
		if len(raw) > 0 {
			return fmt.Errorf("%d bytes of binary data left after the %d elements", len(raw), n)
		}
		return nil
	}
	dst := TensorBytes(t)
	if len(raw) != len(dst) {
		return fmt.Errorf("%d bytes of binary data where %d elements of %s take %d", len(raw), n, t.DType.OIP(), len(dst))
	}
	if littleEndian {
		copy(dst, raw)
		return nil
	}
	return swapInto(t, raw)
}

// swapInto decodes little-endian elements on a big-endian machine.
func swapInto(t Tensor, raw []byte) error {
	_, err := binary.Decode(raw, binary.LittleEndian, t.Data)
	return err
}

// AppendBinary writes t's elements as the wire lays them out.
func AppendBinary(dst []byte, t Tensor) []byte {
	switch d := t.Data.(type) {
	case []bool:
		for _, b := range d {
			if b {
				dst = append(dst, 1)
			} else {
				dst = append(dst, 0)
			}
		}
		return dst
	case []string:
		for _, s := range d {
			dst = binary.LittleEndian.AppendUint32(dst, uint32(len(s)))
			dst = append(dst, s...)
		}
		return dst
	}
	if littleEndian {
		return append(dst, TensorBytes(t)...)
	}
	out, err := binary.Append(dst, binary.LittleEndian, t.Data)
	if err != nil {
		panic(fmt.Sprintf("model: no binary layout for %s: %v", t.DType, err)) // every fixed-size type has one
	}
	return out
}

// BinarySize is how many bytes t takes as binary data.
func BinarySize(t Tensor) int {
	switch d := t.Data.(type) {
	case []bool:
		return len(d)
	case []string:
		n := 0
		for _, s := range d {
			n += 4 + len(s)
		}
		return n
	}
	return len(TensorBytes(t))
}
