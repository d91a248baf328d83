package model

import (
	"fmt"
	"strings"
)

// DType is the element type of a tensor.
type DType uint8

// The element types modelserve can carry between the wire and ONNX Runtime.
// Invalid stands for any other (bfloat16, complex, a non-tensor value).
const (
	Invalid DType = iota
	Float32
	Float64
	Int8
	Int16
	Int32
	Int64
	Uint8
	Uint16
	Uint32
	Uint64
	Bool
	String
	// Float16 is half precision, its elements Float16 (bits).
	Float16
)

var dtypeNames = [...]string{
	Invalid: "unsupported",
	Float32: "float32",
	Float64: "float64",
	Int8:    "int8",
	Int16:   "int16",
	Int32:   "int32",
	Int64:   "int64",
	Uint8:   "uint8",
	Uint16:  "uint16",
	Uint32:  "uint32",
	Uint64:  "uint64",
	Bool:    "bool",
	String:  "string",
	Float16: "float16",
}

// oipNames are the Open Inference Protocol's (KServe v2) datatype names.
var oipNames = [...]string{
	Float32: "FP32",
	Float64: "FP64",
	Int8:    "INT8",
	Int16:   "INT16",
	Int32:   "INT32",
	Int64:   "INT64",
	Uint8:   "UINT8",
	Uint16:  "UINT16",
	Uint32:  "UINT32",
	Uint64:  "UINT64",
	Bool:    "BOOL",
	String:  "BYTES",
	Float16: "FP16",
}

// OIP is the dtype's name in the Open Inference Protocol: FP32, INT64,
// BOOL, BYTES (strings), ...; "" for Invalid.
func (d DType) OIP() string {
	if int(d) < len(oipNames) {
		return oipNames[d]
	}
	return ""
}

func (d DType) String() string {
	if int(d) < len(dtypeNames) {
		return dtypeNames[d]
	}
	return fmt.Sprintf("dtype(%d)", uint8(d))
}

// ParseDType reads the names String writes.
func ParseDType(s string) (DType, error) {
	for i, n := range dtypeNames {
		if n == s {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown dtype %q", s)
}

// ParseOIP reads the names OIP writes (FP32, INT64, BYTES, ...).
func ParseOIP(s string) (DType, error) {
	for i, n := range oipNames {
		if n == s && n != "" {
			return DType(i), nil
		}
	}
	return Invalid, fmt.Errorf("unknown datatype %q", s)
}

// MarshalText writes the dtype's name, so manifests stay readable.
func (d DType) MarshalText() ([]byte, error) {
	if int(d) >= len(dtypeNames) {
		return nil, fmt.Errorf("cannot write %s", d)
	}
	return []byte(d.String()), nil
}

// UnmarshalText reads a dtype's name.
func (d *DType) UnmarshalText(b []byte) error {
	v, err := ParseDType(string(b))
	*d = v
	return err
}

// Size is the bytes one element takes in memory; for strings, the header only.
func (d DType) Size() int {
	switch d {
	case Int8, Uint8, Bool:
		return 1
	case Int16, Uint16, Float16:
		return 2
	case Float32, Int32, Uint32:
		return 4
	case Float64, Int64, Uint64:
		return 8
	case String:
		return 16
	}
	return 0
}

// IsFloat reports a floating-point type.
func (d DType) IsFloat() bool { return d == Float32 || d == Float64 || d == Float16 }

// IsInteger reports a signed or unsigned integer type.
func (d DType) IsInteger() bool { return d >= Int8 && d <= Uint64 }

// IsNumeric reports a type a JSON number converts to.
func (d DType) IsNumeric() bool { return d.IsFloat() || d.IsInteger() }

// SQLType is the warehouse type a caller passes for one element.
func (d DType) SQLType() string {
	switch {
	case d.IsFloat():
		return "FLOAT"
	case d.IsInteger():
		return "NUMBER"
	case d == Bool:
		return "BOOLEAN"
	case d == String:
		return "VARCHAR"
	}
	return strings.ToUpper(d.String())
}
