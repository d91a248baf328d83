package bind

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/modelserve/modelserve/model"
)

// TypeName names an element type for a caller: its SQL type, then its
// ONNX one, e.g. "FLOAT (float32)".
func TypeName(dt model.DType) string { return dt.SQLType() + " (" + dt.String() + ")" }

// Range is the whole numbers an integer element type holds, as int64 (for
// uint64, the part int64 reaches).
func Range(dt model.DType) (lo, hi int64) {
	switch dt {
	case model.Int8:
		return math.MinInt8, math.MaxInt8
	case model.Int16:
		return math.MinInt16, math.MaxInt16
	case model.Int32:
		return math.MinInt32, math.MaxInt32
	case model.Uint8:
		return 0, math.MaxUint8
	case model.Uint16:
		return 0, math.MaxUint16
	case model.Uint32:
		return 0, math.MaxUint32
	case model.Uint64:
		return 0, math.MaxInt64
	}
	return math.MinInt64, math.MaxInt64
}

// Mismatch is the error for a value of the wrong kind; got describes it.
func Mismatch(dt model.DType, got string) error {
	return fmt.Errorf("expected %s, got %s", TypeName(dt), got)
}

// NotWhole is the error for an integer input given something else.
func NotWhole(dt model.DType, got string) error {
	if dt == model.Uint64 {
		return fmt.Errorf("expected a whole number from 0 to %d for %s, got %s", uint64(math.MaxUint64), TypeName(dt), got)
	}
	return fmt.Errorf("expected a whole number for %s, got %s", TypeName(dt), got)
}

// OutOfRange is the error for a whole number its input cannot hold.
func OutOfRange[N int64 | uint64](n N, dt model.DType) error {
	return fmt.Errorf("%d is out of range for %s", n, TypeName(dt))
}

// NullRefused is the error for a null where the input takes none.
func NullRefused(dt model.DType) error {
	if dt.IsFloat() {
		return fmt.Errorf("expected %s, got null; this function does not take nulls (register it with --null-as-nan to read them as NaN)", TypeName(dt))
	}
	return fmt.Errorf("expected %s, got null", TypeName(dt))
}

// Column writes values into one input tensor, each converted to the
// tensor's element type by the rules every front shares.
type Column struct {
	T model.Tensor
	// NullAsNaN reads a null as NaN in a float input.
	NullAsNaN bool
}

// Float stores a floating-point value; an integer input takes it when it
// is whole and in range.
func (c *Column) Float(at int, f float64) error {
	switch d := c.T.Data.(type) {
	case []float32:
		d[at] = float32(f)
		return nil
	case []float64:
		d[at] = f
		return nil
	case []model.Half:
		d[at] = model.ToHalf(f)
		return nil
	}
	if c.T.DType.IsInteger() {
		if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
			return NotWhole(c.T.DType, strconv.FormatFloat(f, 'g', -1, 64))
		}
		switch {
		case f >= 0x1p64 || f < -0x1p63:
			return fmt.Errorf("%v is out of range for %s", f, TypeName(c.T.DType))
		case f >= 0x1p63:
			return c.Uint(at, uint64(f))
		}
		return c.Int(at, int64(f))
	}
	return Mismatch(c.T.DType, "the number "+strconv.FormatFloat(f, 'g', -1, 64))
}

// Int stores a signed whole number, within the input's range.
func (c *Column) Int(at int, n int64) error {
	switch d := c.T.Data.(type) {
	case []float32:
		d[at] = float32(n)
	case []float64:
		d[at] = float64(n)
	case []model.Half:
		d[at] = model.ToHalf(float64(n))
	case []int8:
		return store(d, at, n, c.T.DType)
	case []int16:
		return store(d, at, n, c.T.DType)
	case []int32:
		return store(d, at, n, c.T.DType)
	case []int64:
		d[at] = n
	case []uint8:
		return store(d, at, n, c.T.DType)
	case []uint16:
		return store(d, at, n, c.T.DType)
	case []uint32:
		return store(d, at, n, c.T.DType)
	case []uint64:
		if n < 0 {
			return OutOfRange(n, c.T.DType)
		}
		d[at] = uint64(n)
	default:
		return Mismatch(c.T.DType, "the number "+strconv.FormatInt(n, 10))
	}
	return nil
}

func store[T int8 | int16 | int32 | uint8 | uint16 | uint32](d []T, at int, n int64, dt model.DType) error {
	if lo, hi := Range(dt); n < lo || n > hi {
		return OutOfRange(n, dt)
	}
	d[at] = T(n)
	return nil
}

// Uint stores an unsigned whole number, within the input's range.
func (c *Column) Uint(at int, n uint64) error {
	switch d := c.T.Data.(type) {
	case []uint64:
		d[at] = n
		return nil
	case []float32:
		d[at] = float32(n)
		return nil
	case []float64:
		d[at] = float64(n)
		return nil
	case []model.Half:
		d[at] = model.ToHalf(float64(n))
		return nil
	}
	if n > math.MaxInt64 {
		return OutOfRange(n, c.T.DType)
	}
	return c.Int(at, int64(n))
}

// Bool stores a boolean.
func (c *Column) Bool(at int, b bool) error {
	d, ok := c.T.Data.([]bool)
	if !ok {
		return Mismatch(c.T.DType, strconv.FormatBool(b))
	}
	d[at] = b
	return nil
}

// Text stores a value held as text (a CSV cell, a string): as is for a
// string input, parsed for any other; blank text is null, except for a
// string input.
func (c *Column) Text(at int, s string) error {
	if d, ok := c.T.Data.([]string); ok {
		d[at] = s
		return nil
	}
	if strings.TrimSpace(s) == "" {
		return c.Null(at)
	}
	return c.parse(at, s)
}

// Number stores a numeric literal (a JSON number); a string or boolean
// input refuses it.
func (c *Column) Number(at int, s string) error {
	if c.T.DType == model.String || c.T.DType == model.Bool {
		return Mismatch(c.T.DType, "the number "+s)
	}
	return c.parse(at, s)
}

func (c *Column) parse(at int, s string) error {
	s = strings.TrimSpace(s)
	switch dt := c.T.DType; {
	case dt == model.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("expected %s (true or false), got %q", TypeName(dt), s)
		}
		return c.Bool(at, b)
	case dt.IsFloat():
		bits := 64
		if dt == model.Float32 {
			bits = 32 // rounded once, as strconv rounds to float32
		}
		f, err := strconv.ParseFloat(s, bits)
		if err != nil && !isRange(err) {
			return Mismatch(dt, strconv.Quote(s))
		}
		return c.Float(at, f)
	case dt == model.Uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return c.parseWhole(at, s)
		}
		return c.Uint(at, n)
	default:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return c.parseWhole(at, s)
		}
		return c.Int(at, n)
	}
}

// isRange reports a number too large or small for its type, which
// strconv still rounds (to ±Inf or 0) as a JSON reader does.
func isRange(err error) bool {
	ne, ok := err.(*strconv.NumError)
	return ok && ne.Err == strconv.ErrRange
}

// parseWhole accepts a whole number written with a fraction or exponent
// (5.0, 1e3).
func (c *Column) parseWhole(at int, s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return NotWhole(c.T.DType, strconv.Quote(s))
	}
	return c.Float(at, f)
}

// Null stores a missing value: NaN for a float input of a function that
// reads null as NaN, else an error.
func (c *Column) Null(at int) error {
	if c.T.DType.IsFloat() && c.NullAsNaN {
		return c.Float(at, math.NaN())
	}
	return NullRefused(c.T.DType)
}
