package server

import (
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

// viewBinary is a tensor of dt and shape whose elements are raw's own
// bytes, with no copy, when the wire's layout is the memory's: a
// fixed-size type other than BOOL, this machine little-endian, raw the
// tensor's size and aligned for its elements. ok is false otherwise, and
// the caller copies (model.ReadBinary). raw must then not change while the
// tensor is in use.
func viewBinary(dt model.DType, shape model.Shape, raw []byte) (t model.Tensor, ok bool) {
	size := dt.Size()
	if !model.WireLayout() || size == 0 || dt == model.Bool || len(raw) == 0 ||
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
