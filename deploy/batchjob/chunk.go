package batchjob

import (
	"errors"
	"fmt"
	"slices"

	"github.com/parquet-go/parquet-go"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/model"
)

// chunk is a run of consecutive input rows, filled by a source and run as
// one request. Chunks are the unit of progress: each is written to its own
// part file, and a resumed run skips the parts already written.
type chunk struct {
	index int   // the chunk's number, from 0
	first int64 // the input row number of its first row
	rows  int
	cap   int
	// ids holds each row's id when the input has an id column.
	ids    []parquet.Value
	b      *binding
	inputs []model.Tensor // allocated at the first row that reaches each
	cols   []bind.Column
}

func newChunk(b *binding, capRows int) *chunk {
	c := &chunk{b: b, cap: capRows, inputs: make([]model.Tensor, len(b.sig.Inputs)), cols: make([]bind.Column, len(b.sig.Inputs))}
	if b.id != "" {
		c.ids = make([]parquet.Value, 0, capRows)
	}
	return c
}

// reset readies the chunk for chunk number index. Tensors are allocated
// afresh: when a run is canceled, pieces of the previous use may still be
// running in a worker, reading them.
func (c *chunk) reset(index int, first int64) {
	c.index, c.first, c.rows = index, first, 0
	c.ids = c.ids[:0]
	for i := range c.inputs {
		c.inputs[i] = model.Tensor{}
	}
}

func (c *chunk) full() bool { return c.rows == c.cap }

// rowErr names row r of the chunk in an error.
func (c *chunk) rowErr(r int, column string, err error) error {
	e := &bind.Error{Row: c.first + int64(r), Column: column, Err: err}
	if r < len(c.ids) {
		e.ID = idText(c.ids[r])
	}
	return e
}

// alloc allocates input i's tensor with the given row shape, the first
// time a row reaches the input.
func (c *chunk) alloc(i int, rowShape model.Shape) error {
	t, err := model.NewTensor(c.b.sig.Inputs[i].DType, append(model.Shape{int64(c.cap)}, rowShape...))
	if err != nil {
		return fmt.Errorf("input %q: %w", c.b.sig.Inputs[i].Name, err)
	}
	c.inputs[i] = t
	c.cols[i] = bind.Column{T: t, NullAsNaN: c.b.nullAsNaN}
	return nil
}

// scalar returns where row r's value of a scalar or feature target goes.
// Such an input's row shape is the signature's, fixed.
func (c *chunk) scalar(t bind.Target, r int) (*bind.Column, int, error) {
	i := t.Input
	if c.inputs[i].Data == nil {
		if err := c.alloc(i, c.b.rowShapes[i]); err != nil {
			return nil, 0, err
		}
	}
	if t.Feature >= 0 {
		return &c.cols[i], r*c.inputs[i].RowElements() + t.Feature, nil
	}
	if n := c.inputs[i].RowElements(); n != 1 {
		return nil, 0, fmt.Errorf("expected an array of %d values (shape %s), got one value", n, c.b.rowShapes[i])
	}
	return &c.cols[i], r, nil
}

// array returns where row r's array value of a whole-input target goes,
// given the array's nested shape. The first row fixes the shape of the
// chunk's rows; later ones must have it.
func (c *chunk) array(t bind.Target, r int, shape model.Shape) (*bind.Column, int, error) {
	i := t.Input
	if in := c.inputs[i]; in.Data != nil && slices.Equal(in.Shape[1:], shape) {
		return &c.cols[i], r * in.RowElements(), nil
	}
	rowShape, err := bind.RowShape(c.b.rowShapes[i], shape)
	if err != nil {
		return nil, 0, err
	}
	if in := c.inputs[i]; in.Data != nil {
		if !slices.Equal(in.Shape[1:], rowShape) {
			return nil, 0, fmt.Errorf("an array of shape %s where this chunk's earlier rows have %s; rows run together must share a shape", rowShape, in.Shape[1:])
		}
	} else if err := c.alloc(i, rowShape); err != nil {
		return nil, 0, err
	}
	return &c.cols[i], r * c.inputs[i].RowElements(), nil
}

// flat is array for a flat list of n elements (a Parquet list), which fills
// the row in order.
func (c *chunk) flat(t bind.Target, r, n int) (*bind.Column, int, error) {
	if in := c.inputs[t.Input]; in.Data != nil && in.RowElements() == n {
		return &c.cols[t.Input], r * n, nil
	}
	return c.array(t, r, model.Shape{int64(n)})
}

// isArray reports whether a whole-input target takes an array per row.
func (c *chunk) isArray(t bind.Target) bool {
	shape := c.b.rowShapes[t.Input]
	return t.Feature < 0 && len(shape) > 0 && shape.Elements() != 1
}

// tensors are the chunk's inputs cut to the rows it holds. Every source
// fills every input of every row it reads; an input still empty means one
// did not, which is refused rather than sent on.
func (c *chunk) tensors() ([]model.Tensor, error) {
	out := make([]model.Tensor, len(c.inputs))
	for i, t := range c.inputs {
		if t.Data == nil {
			return nil, c.rowErr(0, c.b.sig.Inputs[i].Name, errors.New("no value was read for this input"))
		}
		out[i] = t.SliceRows(0, c.rows)
	}
	return out, nil
}
