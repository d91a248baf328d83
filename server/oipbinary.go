package server

import (
	"encoding/binary"
	"fmt"
	"unsafe"

	"github.com/modelserve/modelserve/model"
)

// The binary tensor data extension (Triton's, which KServe clients
// speak): a request's body is its JSON header, Inference-Header-Content-
// Length bytes long, then the data of each input whose parameters give a
// binary_data_size, in the order the inputs come; elements row-major and
// little-endian, BOOL one byte each, BYTES each a 4-byte little-endian
// length and its bytes. An answer is written the same way for the outputs
// asked for as binary.

// InferenceHeaderLength is the header that says where a binary request's
// or answer's JSON ends.
const InferenceHeaderLength = "Inference-Header-Content-Length"

// littleEndian is whether tensors are laid out in memory as the wire
// lays them out, so a fixed-size tensor is one copy.
var littleEndian = binary.NativeEndian.Uint16([]byte{1, 0}) == 1

// tensorBytes is a fixed-size tensor's memory, as bytes.
func tensorBytes(t model.Tensor) []byte {
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
	case []model.Half:
		return asBytes(d)
	}
	return nil
}

func asBytes[T int8 | int16 | int32 | int64 | uint16 | uint32 | uint64 | float32 | float64 | model.Half](d []T) []byte {
	if len(d) == 0 {
		return nil
	}
	var zero T
	return unsafe.Slice((*byte)(unsafe.Pointer(&d[0])), len(d)*int(unsafe.Sizeof(zero)))
}

// readBinary fills t from raw, the input's binary data.
func readBinary(t model.Tensor, raw []byte) error {
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
	dst := tensorBytes(t)
	if len(raw) != len(dst) {
		return fmt.Errorf("%d bytes of binary data where %d elements of %s take %d", len(raw), n, t.DType.OIP(), len(dst))
	}
	if littleEndian {
		copy(dst, raw)
		return nil
	}
	return swapInto(t, raw)
}

// viewBinary is a tensor of dt and shape whose elements are raw's own
// bytes, with no copy, when the wire's layout is the memory's: a
// fixed-size type other than BOOL, this machine little-endian, raw the
// tensor's size and aligned for its elements. ok is false otherwise, and
// the caller copies (readBinary). raw must then not change while the
// tensor is in use.
func viewBinary(dt model.DType, shape model.Shape, raw []byte) (t model.Tensor, ok bool) {
	size := dt.Size()
	if !littleEndian || size == 0 || dt == model.Bool || len(raw) == 0 ||
		len(raw) != size*shape.Elements() || uintptr(unsafe.Pointer(&raw[0]))%uintptr(size) != 0 {
		return model.Tensor{}, false
	}
	var data any
	switch dt {
	case model.Float32:
		data = view[float32](raw)
	case model.Float64:
		data = view[float64](raw)
	case model.Float16:
		data = view[model.Half](raw)
	case model.Int8:
		data = view[int8](raw)
	case model.Int16:
		data = view[int16](raw)
	case model.Int32:
		data = view[int32](raw)
	case model.Int64:
		data = view[int64](raw)
	case model.Uint8:
		data = raw
	case model.Uint16:
		data = view[uint16](raw)
	case model.Uint32:
		data = view[uint32](raw)
	case model.Uint64:
		data = view[uint64](raw)
	default:
		return model.Tensor{}, false
	}
	return model.Tensor{DType: dt, Shape: shape, Data: data}, true
}

func view[T int8 | int16 | int32 | int64 | uint16 | uint32 | uint64 | float32 | float64 | model.Half](raw []byte) []T {
	var zero T
	return unsafe.Slice((*T)(unsafe.Pointer(&raw[0])), len(raw)/int(unsafe.Sizeof(zero)))
}

// swapInto decodes little-endian elements on a big-endian machine.
func swapInto(t model.Tensor, raw []byte) error {
	_, err := binary.Decode(raw, binary.LittleEndian, t.Data)
	return err
}

// appendBinary writes t's elements as the wire lays them out.
func appendBinary(dst []byte, t model.Tensor) []byte {
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
		return append(dst, tensorBytes(t)...)
	}
	out, err := binary.Append(dst, binary.LittleEndian, t.Data)
	if err != nil {
		panic(fmt.Sprintf("server: no binary layout for %s: %v", t.DType, err)) // every fixed-size type has one
	}
	return out
}

// binarySize is how many bytes t takes as binary data.
func binarySize(t model.Tensor) int {
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
	return len(tensorBytes(t))
}
