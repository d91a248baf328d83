package batchjob

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"slices"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/model"
)

// source reads an input file a chunk at a time, never more.
type source interface {
	// columns are the file's column names, in the file's order.
	columns() []string
	// bind learns which columns fill which inputs.
	bind(b *binding) error
	// read fills c up to its capacity; io.EOF once no row is left.
	read(c *chunk) error
	// skip passes over up to n rows without converting them, returning how
	// many there were.
	skip(n int) (int, error)
	// position is how far reading has got as a fraction of the file, and
	// the file's row count when the format records it (-1 otherwise).
	position() (fraction float64, totalRows int64)
	Close() error
}

// fillJSON writes a JSON value — a CSV cell holding an array, or a JSON
// Lines field — into row r of target t.
func fillJSON(c *chunk, t bind.Target, r int, raw []byte) error {
	raw = bytes.TrimSpace(raw)
	if !c.isArray(t) {
		col, at, err := c.scalar(t, r)
		if err != nil {
			return err
		}
		return setJSON(col, at, raw)
	}
	if len(raw) == 0 || raw[0] != '[' {
		return fmt.Errorf("expected an array (shape %s), got %s", c.b.rowShapes[t.Input], describe(raw))
	}
	// Nested no deeper than the input's shape: the walks below recurse.
	if rank := len(c.b.rowShapes[t.Input]); rank < model.MaxNesting {
		if depth, _ := model.Nesting(raw, rank); depth > rank {
			return fmt.Errorf("the arrays nest deeper than the input's shape %s", c.b.rowShapes[t.Input])
		}
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return fmt.Errorf("reading the array: %w", err)
	}
	shape, err := jsonShape(v)
	if err != nil {
		return err
	}
	col, base, err := c.array(t, r, shape)
	if err != nil {
		return err
	}
	at := base
	return fillLeaves(col, &at, v)
}

// setJSON stores one JSON scalar.
func setJSON(col *bind.Column, at int, raw []byte) error {
	switch {
	case len(raw) == 0:
		return col.Null(at)
	case raw[0] == '"':
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return fmt.Errorf("reading a string: %w", err)
		}
		return col.Text(at, s)
	case string(raw) == "null":
		return col.Null(at)
	case string(raw) == "true" || string(raw) == "false":
		return col.Bool(at, raw[0] == 't')
	case raw[0] == '[' || raw[0] == '{':
		return fmt.Errorf("expected %s, got %s", bind.TypeName(col.T.DType), describe(raw))
	}
	return col.Number(at, string(raw))
}

func describe(raw []byte) string {
	switch {
	case len(raw) == 0:
		return "nothing"
	case raw[0] == '[':
		return "an array"
	case raw[0] == '{':
		return "an object"
	case len(raw) > 40:
		return string(raw[:40]) + "…"
	}
	return string(raw)
}

// jsonShape is the shape of nested arrays, which must be rectangular.
func jsonShape(v any) (model.Shape, error) {
	a, ok := v.([]any)
	if !ok {
		return nil, nil
	}
	shape := model.Shape{int64(len(a))}
	if len(a) == 0 {
		return shape, nil
	}
	inner, err := jsonShape(a[0])
	if err != nil {
		return nil, err
	}
	for _, e := range a[1:] {
		s, err := jsonShape(e)
		if err != nil {
			return nil, err
		}
		if !slices.Equal(s, inner) {
			return nil, fmt.Errorf("nested arrays of different lengths (%s and %s)", inner, s)
		}
	}
	return append(shape, inner...), nil
}

// fillLeaves writes the leaves of nested arrays in row-major order.
func fillLeaves(col *bind.Column, at *int, v any) error {
	var err error
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			if err := fillLeaves(col, at, e); err != nil {
				return err
			}
		}
		return nil
	case json.Number:
		err = col.Number(*at, x.String())
	case string:
		err = col.Text(*at, x)
	case bool:
		err = col.Bool(*at, x)
	case nil:
		err = col.Null(*at)
	default:
		err = fmt.Errorf("expected %s, got an object", bind.TypeName(col.T.DType))
	}
	*at++
	return err
}

// countingReader counts the bytes read through it, for progress.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// readBuffer sizes the buffer a file of size bytes is read through: a
// megabyte, or less for a smaller file.
func readBuffer(size int64) int { return int(max(min(size+1, 1<<20), 4096)) }

// openSized opens an input file and tells its size.
func openSized(path string) (*os.File, int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, err
	}
	info, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, info.Size(), nil
}
