package batchjob

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/modelserve/modelserve/model"
)

// column writes a file's values into one input tensor, each converted to
// the input's element type with the same rules as the server: whole
// numbers for integer inputs, within range; numbers written as text are
// read; null only as NaN, and only where the function asks for it.
type column struct {
	t         model.Tensor
	nullAsNaN bool
}

func (c *column) typeName() string { return c.t.DType.SQLType() + " (" + c.t.DType.String() + ")" }

// float stores a floating-point value.
func (c *column) float(at int, f float64) error {
	switch d := c.t.Data.(type) {
	case []float32:
		d[at] = float32(f)
		return nil
	case []float64:
		d[at] = f
		return nil
	}
	if c.t.DType.IsInteger() {
		if f != math.Trunc(f) || math.IsInf(f, 0) || math.IsNaN(f) {
			return fmt.Errorf("expected a whole number for %s, got %v", c.typeName(), f)
		}
		if f < 0 {
			return c.int(at, int64(f))
		}
		if f >= 1<<63 {
			return c.uint(at, uint64(f))
		}
		return c.int(at, int64(f))
	}
	return fmt.Errorf("expected %s, got the number %v", c.typeName(), f)
}

// int stores a signed whole number.
func (c *column) int(at int, n int64) error {
	switch d := c.t.Data.(type) {
	case []float32:
		d[at] = float32(n)
	case []float64:
		d[at] = float64(n)
	case []int8:
		return store(d, at, n, math.MinInt8, math.MaxInt8, c.t.DType)
	case []int16:
		return store(d, at, n, math.MinInt16, math.MaxInt16, c.t.DType)
	case []int32:
		return store(d, at, n, math.MinInt32, math.MaxInt32, c.t.DType)
	case []int64:
		d[at] = n
	case []uint8:
		return store(d, at, n, 0, math.MaxUint8, c.t.DType)
	case []uint16:
		return store(d, at, n, 0, math.MaxUint16, c.t.DType)
	case []uint32:
		return store(d, at, n, 0, math.MaxUint32, c.t.DType)
	case []uint64:
		if n < 0 {
			return fmt.Errorf("%d is out of range for %s", n, c.t.DType)
		}
		d[at] = uint64(n)
	default:
		return fmt.Errorf("expected %s, got the number %d", c.typeName(), n)
	}
	return nil
}

func store[T int8 | int16 | int32 | uint8 | uint16 | uint32](d []T, at int, n, lo, hi int64, dt model.DType) error {
	if n < lo || n > hi {
		return fmt.Errorf("%d is out of range for %s", n, dt)
	}
	d[at] = T(n)
	return nil
}

// uint stores an unsigned whole number.
func (c *column) uint(at int, n uint64) error {
	switch d := c.t.Data.(type) {
	case []uint64:
		d[at] = n
		return nil
	case []float32:
		d[at] = float32(n)
		return nil
	case []float64:
		d[at] = float64(n)
		return nil
	}
	if n > math.MaxInt64 {
		return fmt.Errorf("%d is out of range for %s", n, c.t.DType)
	}
	return c.int(at, int64(n))
}

// bool stores a boolean.
func (c *column) bool(at int, b bool) error {
	d, ok := c.t.Data.([]bool)
	if !ok {
		return fmt.Errorf("expected %s, got %t", c.typeName(), b)
	}
	d[at] = b
	return nil
}

// text stores a value the file holds as text (a CSV cell, a JSON or
// Parquet string): as is for a string input, parsed for any other; empty
// text is null, except for a string input.
func (c *column) text(at int, s string) error {
	if d, ok := c.t.Data.([]string); ok {
		d[at] = s
		return nil
	}
	if strings.TrimSpace(s) == "" {
		return c.null(at)
	}
	return c.parse(at, s)
}

// number stores a numeric literal (a JSON number); a string input refuses it.
func (c *column) number(at int, s string) error {
	if c.t.DType == model.String || c.t.DType == model.Bool {
		return fmt.Errorf("expected %s, got the number %s", c.typeName(), s)
	}
	return c.parse(at, s)
}

func (c *column) parse(at int, s string) error {
	s = strings.TrimSpace(s)
	switch dt := c.t.DType; {
	case dt == model.Bool:
		b, err := strconv.ParseBool(s)
		if err != nil {
			return fmt.Errorf("expected %s (true or false), got %q", c.typeName(), s)
		}
		return c.bool(at, b)
	case dt.IsFloat():
		f, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return fmt.Errorf("expected %s, got %q", c.typeName(), s)
		}
		return c.float(at, f)
	case dt == model.Uint64:
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return c.parseWhole(at, s)
		}
		return c.uint(at, n)
	default:
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return c.parseWhole(at, s)
		}
		return c.int(at, n)
	}
}

// parseWhole accepts a whole number written with a fraction or exponent
// (5.0, 1e3), as the server does.
func (c *column) parseWhole(at int, s string) error {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil {
		return fmt.Errorf("expected a whole number for %s, got %q", c.typeName(), s)
	}
	return c.float(at, f)
}

// null stores a missing value: NaN for a float input of a function that
// reads null as NaN, else an error.
func (c *column) null(at int) error {
	if c.t.DType.IsFloat() && c.nullAsNaN {
		return c.float(at, math.NaN())
	}
	if c.t.DType.IsFloat() {
		return fmt.Errorf("expected %s, got null; this function does not take nulls (register it with --null-as-nan to read them as NaN)", c.typeName())
	}
	return fmt.Errorf("expected %s, got null", c.typeName())
}
