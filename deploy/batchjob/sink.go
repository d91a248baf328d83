package batchjob

import (
	"bufio"
	"encoding/csv"
	"fmt"
	"io"
	"math"
	"os"
	"strconv"

	"github.com/parquet-go/parquet-go"

	"github.com/modelserve/modelserve/model"
)

// sink writes output rows: one part file per chunk, joined in chunk order
// once every chunk is done.
type sink interface {
	writePart(w io.Writer, c *chunk, outs []model.Tensor) error
	assemble(w io.Writer, parts []string) error
}

// layout is the output's columns: the row id, then the function's outputs
// in the function's order.
type layout struct {
	id    string
	names []string
	specs []model.Spec
	// pick is, per output column, its index among the tensors a run
	// returns (the signature's fetched outputs).
	pick []int
	// scalar: one value per row, written plainly; else an array.
	scalar []bool
}

func newLayout(sig model.Signature, fn model.Function, id string) (*layout, error) {
	l := &layout{id: id}
	fetched := sig.FetchedOutputs()
	for _, name := range fn.Outputs {
		if name == id {
			return nil, fmt.Errorf("the output %q has the id column's name; name the id column differently", name)
		}
		spec, _, _ := sig.Output(name)
		l.names = append(l.names, name)
		l.specs = append(l.specs, spec)
		l.scalar = append(l.scalar, spec.RowShape().Elements() == 1)
		for i, f := range fetched {
			if f == name {
				l.pick = append(l.pick, i)
			}
		}
	}
	return l, nil
}

// rowID is row r's id: from the id column, or its number in the input.
func rowID(c *chunk, r int) parquet.Value {
	if c.ids != nil {
		return c.ids[r]
	}
	return parquet.Int64Value(c.first + int64(r))
}

// csvSink writes CSV: scalars as text, arrays as JSON.
type csvSink struct{ l *layout }

func (s csvSink) writePart(w io.Writer, c *chunk, outs []model.Tensor) error {
	cw := csv.NewWriter(w)
	rec := make([]string, 1+len(s.l.names))
	var buf []byte
	writers := jsonWriters(s.l, outs)
	for r := range c.rows {
		rec[0] = idText(rowID(c, r))
		for k, i := range s.l.pick {
			t := outs[i]
			if s.l.scalar[k] {
				rec[1+k] = scalarText(t, r)
				continue
			}
			buf = model.AppendJSONValue(buf[:0], writers[k], t.Shape[1:], r*t.RowElements())
			rec[1+k] = string(buf)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func (s csvSink) assemble(w io.Writer, parts []string) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(append([]string{s.l.id}, s.l.names...)); err != nil {
		return err
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return err
	}
	return concat(w, parts)
}

// scalarText writes element r of t as a CSV cell.
func scalarText(t model.Tensor, r int) string {
	switch d := t.Data.(type) {
	case []float32:
		return floatText(float64(d[r]), 32)
	case []float64:
		return floatText(d[r], 64)
	case []string:
		return d[r]
	case []bool:
		return strconv.FormatBool(d[r])
	}
	return string(model.JSONWriter(t)(nil, r))
}

func floatText(f float64, bits int) string {
	if math.IsNaN(f) {
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, bits)
}

func jsonWriters(l *layout, outs []model.Tensor) []model.ValueWriter {
	w := make([]model.ValueWriter, len(l.pick))
	for k, i := range l.pick {
		w[k] = model.JSONWriter(outs[i])
	}
	return w
}

// jsonlSink writes JSON Lines: one object per row, the id first.
type jsonlSink struct{ l *layout }

func (s jsonlSink) writePart(w io.Writer, c *chunk, outs []model.Tensor) error {
	bw := bufio.NewWriterSize(w, 1<<16)
	writers := jsonWriters(s.l, outs)
	idKey := append(model.AppendJSONString([]byte{'{'}, s.l.id), ':')
	keys := make([][]byte, len(s.l.names))
	for k, name := range s.l.names {
		keys[k] = append(model.AppendJSONString([]byte{','}, name), ':')
	}
	var buf []byte
	for r := range c.rows {
		buf = appendIDJSON(append(buf[:0], idKey...), rowID(c, r))
		for k, i := range s.l.pick {
			t := outs[i]
			var shape model.Shape
			if !s.l.scalar[k] {
				shape = t.Shape[1:]
			}
			buf = append(buf, keys[k]...)
			buf = model.AppendJSONValue(buf, writers[k], shape, r*t.RowElements())
		}
		buf = append(buf, '}', '\n')
		if _, err := bw.Write(buf); err != nil {
			return err
		}
	}
	return bw.Flush()
}

func (s jsonlSink) assemble(w io.Writer, parts []string) error { return concat(w, parts) }

// concat copies the parts, in order, to w.
func concat(w io.Writer, parts []string) error {
	for _, p := range parts {
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		_, err = io.Copy(w, f)
		f.Close()
		if err != nil {
			return fmt.Errorf("copying %s: %w", p, err)
		}
	}
	return nil
}

// parquetSink writes Parquet, compressed with Snappy: the id column, then
// one column per output, a list (nested as the output's rows are) for an
// array. Each part is a Parquet file of one row group; the output takes
// their row groups as they are.
type parquetSink struct {
	l      *layout
	schema *parquet.Schema
	// idText: the id column holds text (ids read from CSV or JSON).
	idText bool
}

// newParquetSink builds the schema: idNode is the id column's type as the
// input has it, or nil for text ids.
func newParquetSink(l *layout, idNode parquet.Node) (*parquetSink, error) {
	s := &parquetSink{l: l}
	if idNode == nil {
		idNode, s.idText = parquet.Optional(parquet.String()), true
	}
	g := orderedGroup{Group: parquet.Group{}}
	add := func(name string, n parquet.Node) {
		g.Group[name] = n
		g.fields = append(g.fields, parquet.Group{name: n}.Fields()[0])
	}
	add(l.id, idNode)
	for k, spec := range l.specs {
		leaf, err := parquetLeaf(spec.DType)
		if err != nil {
			return nil, fmt.Errorf("output %q: %w", spec.Name, err)
		}
		if !l.scalar[k] {
			for range spec.RowShape() {
				leaf = parquet.List(leaf)
			}
		}
		add(l.names[k], leaf)
	}
	s.schema = parquet.NewSchema("modelserve", g)
	return s, nil
}

// orderedGroup is a Parquet group whose columns keep the order they were
// added in (parquet.Group sorts them by name).
type orderedGroup struct {
	parquet.Group
	fields []parquet.Field
}

func (g orderedGroup) Fields() []parquet.Field { return g.fields }

func parquetLeaf(dt model.DType) (parquet.Node, error) {
	switch dt {
	case model.Float32, model.Float16: // float16 written as float32, exactly
		return parquet.Leaf(parquet.FloatType), nil
	case model.Float64:
		return parquet.Leaf(parquet.DoubleType), nil
	case model.Int8:
		return parquet.Int(8), nil
	case model.Int16:
		return parquet.Int(16), nil
	case model.Int32:
		return parquet.Int(32), nil
	case model.Int64:
		return parquet.Int(64), nil
	case model.Uint8:
		return parquet.Uint(8), nil
	case model.Uint16:
		return parquet.Uint(16), nil
	case model.Uint32:
		return parquet.Uint(32), nil
	case model.Uint64:
		return parquet.Uint(64), nil
	case model.Bool:
		return parquet.Leaf(parquet.BooleanType), nil
	case model.String:
		return parquet.String(), nil
	}
	return nil, fmt.Errorf("no Parquet type for %s", dt)
}

func (s *parquetSink) writer(w io.Writer) *parquet.GenericWriter[any] {
	return parquet.NewGenericWriter[any](w, s.schema, parquet.Compression(&parquet.Snappy), parquet.CreatedBy("modelserve", "", ""))
}

func (s *parquetSink) writePart(w io.Writer, c *chunk, outs []model.Tensor) error {
	pw := s.writer(w)
	// The writer copies what WriteRows is given, so the rows' values are
	// reused from one batch of rows to the next.
	rows := make([]parquet.Row, 256)
	n := 0
	values := make([]valueOf, len(s.l.pick))
	for k, i := range s.l.pick {
		values[k] = parquetValues(outs[i])
	}
	for r := range c.rows {
		row := append(rows[n][:0], s.id(rowID(c, r)))
		for k, i := range s.l.pick {
			t := outs[i]
			if s.l.scalar[k] {
				row = append(row, values[k](r).Level(0, 0, 1+k))
				continue
			}
			row = appendList(row, values[k], t.Shape[1:], r*t.RowElements(), 1+k)
		}
		rows[n] = row
		if n++; n == len(rows) {
			if _, err := pw.WriteRows(rows); err != nil {
				return err
			}
			n = 0
		}
	}
	if _, err := pw.WriteRows(rows[:n]); err != nil {
		return err
	}
	return pw.Close()
}

// id places a row's id in column 0 with the levels its node gives it.
func (s *parquetSink) id(v parquet.Value) parquet.Value {
	switch {
	case s.idText && v.IsNull():
		return parquet.NullValue().Level(0, 0, 0)
	case s.idText:
		return parquet.ByteArrayValue(appendIDText(nil, v)).Level(0, 1, 0)
	}
	return v.Level(v.RepetitionLevel(), v.DefinitionLevel(), 0)
}

// valueOf returns element i of a tensor as a Parquet value.
type valueOf func(i int) parquet.Value

func parquetValues(t model.Tensor) valueOf {
	switch d := t.Data.(type) {
	case []float32:
		return func(i int) parquet.Value { return parquet.FloatValue(d[i]) }
	case []float64:
		return func(i int) parquet.Value { return parquet.DoubleValue(d[i]) }
	case []model.Half:
		return func(i int) parquet.Value { return parquet.FloatValue(d[i].Float32()) }
	case []int8:
		return func(i int) parquet.Value { return parquet.Int32Value(int32(d[i])) }
	case []int16:
		return func(i int) parquet.Value { return parquet.Int32Value(int32(d[i])) }
	case []int32:
		return func(i int) parquet.Value { return parquet.Int32Value(d[i]) }
	case []int64:
		return func(i int) parquet.Value { return parquet.Int64Value(d[i]) }
	case []uint8:
		return func(i int) parquet.Value { return parquet.Int32Value(int32(d[i])) }
	case []uint16:
		return func(i int) parquet.Value { return parquet.Int32Value(int32(d[i])) }
	case []uint32:
		return func(i int) parquet.Value { return parquet.Int32Value(int32(d[i])) }
	case []uint64:
		return func(i int) parquet.Value { return parquet.Int64Value(int64(d[i])) }
	case []bool:
		return func(i int) parquet.Value { return parquet.BooleanValue(d[i]) }
	case []string:
		return func(i int) parquet.Value { return parquet.ByteArrayValue([]byte(d[i])) }
	}
	return func(int) parquet.Value { return parquet.NullValue() }
}

// appendList writes one row's array, of the given shape from element at,
// as nested lists: each value's repetition level says which list a new
// element starts, its definition level how deep the lists go (an empty
// list stops short).
func appendList(row parquet.Row, value valueOf, shape model.Shape, at, column int) parquet.Row {
	l := list{row: row, value: value, shape: shape, at: at, column: column}
	l.walk(0, 0)
	return l.row
}

// list is appendList's walk over one row's nested array.
type list struct {
	row    parquet.Row
	value  valueOf
	shape  model.Shape
	at     int
	column int
}

func (l *list) walk(dim, rep int) {
	depth := len(l.shape)
	if dim == depth {
		l.row = append(l.row, l.value(l.at).Level(rep, depth, l.column))
		l.at++
		return
	}
	if l.shape[dim] == 0 {
		l.row = append(l.row, parquet.NullValue().Level(rep, dim, l.column))
		return
	}
	for j := range int(l.shape[dim]) {
		if j > 0 {
			rep = dim + 1
		}
		l.walk(dim+1, rep)
	}
}

func (s *parquetSink) assemble(w io.Writer, parts []string) error {
	pw := s.writer(w)
	for _, p := range parts {
		if err := copyRowGroups(pw, p); err != nil {
			return fmt.Errorf("copying %s: %w", p, err)
		}
	}
	return pw.Close()
}

func copyRowGroups(pw *parquet.GenericWriter[any], path string) error {
	f, size, err := openSized(path)
	if err != nil {
		return err
	}
	defer f.Close()
	pf, err := parquet.OpenFile(f, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
	if err != nil {
		return err
	}
	for _, rg := range pf.RowGroups() {
		if _, err := pw.WriteRowGroup(rg); err != nil {
			return err
		}
	}
	return nil
}
