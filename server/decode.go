package server

import (
	"fmt"
	"math"
	"strconv"
	"strings"

	"github.com/valyala/fastjson"

	"github.com/modelserve/modelserve/model"
)

// InputError is a caller's mistake in one request, worded for the caller:
// it names the row and the column at fault when there is one.
type InputError struct {
	Row    int64  // the caller's row number, or -1
	Column string // the argument's name, or ""
	Msg    string
}

func (e *InputError) Error() string {
	var b strings.Builder
	if e.Row >= 0 {
		fmt.Fprintf(&b, "row %d", e.Row)
	}
	if e.Column != "" {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "column %q", e.Column)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

func inputErr(row int64, column, format string, args ...any) *InputError {
	return &InputError{Row: row, Column: column, Msg: fmt.Sprintf(format, args...)}
}

// batch is a decoded request: the caller's row numbers and one tensor per
// model input, rows in the caller's order.
type batch struct {
	rowIDs []int64
	inputs []model.Tensor
	// echo holds, per row, the raw JSON of a wide row's _ID key, if any.
	echo [][]byte
}

// decoder turns external-function rows into input tensors for one model.
type decoder struct {
	sig   model.Signature
	args  []model.Argument
	usage string // the accepted argument lists, for arity errors
	// byName finds an argument by its exact name, byUpper by its
	// upper-cased one (SQL's unquoted identifiers); a value of -1 - i
	// stands for input i given whole.
	byName  map[string]int
	byUpper map[string]int
	// features holds, per input, the names of its F scalar arguments, or
	// nil when the input is not a feature matrix.
	features [][]string
}

func newDecoder(sig model.Signature) *decoder {
	d := &decoder{sig: sig, args: sig.Arguments(), byName: map[string]int{}, byUpper: map[string]int{},
		features: make([][]string, len(sig.Inputs))}
	for i, a := range d.args {
		d.byName[a.Name] = i
		d.byUpper[strings.ToUpper(a.Name)] = i
	}
	for i, in := range sig.Inputs {
		if _, ok := sig.FeatureCount(i); ok {
			d.features[i] = sig.FeatureNames(i)
			if _, taken := d.byName[in.Name]; !taken {
				d.byName[in.Name] = -1 - i
				d.byUpper[strings.ToUpper(in.Name)] = -1 - i
			}
		}
	}
	d.usage = usage(sig, d.args)
	return d
}

func usage(sig model.Signature, args []model.Argument) string {
	count := func(n int) string {
		if n == 1 {
			return "1 argument"
		}
		return fmt.Sprintf("%d arguments", n)
	}
	s := fmt.Sprintf("%s (%s)", count(len(args)), sig.FormatArguments(args))
	if sig.HasFeatures() {
		whole := sig.WholeArguments()
		s += fmt.Sprintf(" or %s (%s)", count(len(whole)), sig.FormatArguments(whole))
	}
	return s
}

// decode parses body, which p may reuse, into a batch.
func (d *decoder) decode(body []byte, p *fastjson.Parser) (*batch, error) {
	doc, err := p.ParseBytes(body)
	if err != nil {
		return nil, inputErr(-1, "", "the body is not valid JSON: %v", err)
	}
	data := doc.Get("data")
	if data == nil {
		return nil, inputErr(-1, "", `the body has no "data" key; send {"data": [[row, arg, ...], ...]}`)
	}
	rows, err := data.Array()
	if err != nil {
		return nil, inputErr(-1, "", `"data" must be an array of rows, got %s`, data.Type())
	}
	if len(rows) == 0 {
		return nil, inputErr(-1, "", `"data" holds no rows`)
	}
	b := &batch{rowIDs: make([]int64, len(rows)), inputs: make([]model.Tensor, len(d.sig.Inputs))}
	cols := make([]column, len(d.sig.Inputs))
	var wide *wideScratch
	for r, row := range rows {
		cells, err := row.Array()
		if err != nil || len(cells) == 0 {
			return nil, inputErr(int64(r), "", "each row must be an array [row number, arguments...], got %s", row.Type())
		}
		id, err := rowNumber(cells[0])
		if err != nil {
			return nil, inputErr(int64(r), "", "%v", err)
		}
		b.rowIDs[r] = id
		if len(cells) == 2 && cells[1].Type() == fastjson.TypeObject {
			if wide == nil {
				wide = d.newWideScratch()
			}
			err = d.wideRow(b, cols, wide, r, id, cells[1])
		} else {
			err = d.flatRow(b, cols, r, id, cells[1:])
		}
		if err != nil {
			return nil, err
		}
	}
	return b, nil
}

// rowNumber reads element 0 of a row; some clients send 0.0 for 0.
func rowNumber(v *fastjson.Value) (int64, error) {
	if v.Type() != fastjson.TypeNumber {
		return 0, fmt.Errorf("the row number (element 0) must be a number, got %s", v.Type())
	}
	if n, err := v.Int64(); err == nil {
		return n, nil
	}
	f, err := v.Float64()
	if err != nil || f != math.Trunc(f) || math.Abs(f) > 1<<53 {
		return 0, fmt.Errorf("the row number (element 0) must be a whole number, got %s", v)
	}
	return int64(f), nil
}

// flatRow fills row r from positional arguments. A feature-matrix input
// takes either its F scalars or one array.
func (d *decoder) flatRow(b *batch, cols []column, r int, id int64, cells []*fastjson.Value) error {
	pos := 0
	for i, in := range d.sig.Inputs {
		f := len(d.features[i])
		if pos >= len(cells) {
			return d.arityError(id, len(cells))
		}
		if f > 0 && cells[pos].Type() != fastjson.TypeArray {
			if pos+f > len(cells) {
				return d.arityError(id, len(cells))
			}
			if err := d.setFeatures(b, cols, i, r, id, cells[pos:pos+f]); err != nil {
				return err
			}
			pos += f
			continue
		}
		if err := d.setWhole(b, cols, i, r, id, in.Name, cells[pos]); err != nil {
			return err
		}
		pos++
	}
	if pos != len(cells) {
		return d.arityError(id, len(cells))
	}
	return nil
}

func (d *decoder) arityError(id int64, got int) error {
	return inputErr(id, "", "expected %s, got %d", d.usage, got)
}

// wideScratch is reused from one wide row to the next.
type wideScratch struct {
	whole    []*fastjson.Value   // per input, its whole value
	features [][]*fastjson.Value // per feature-matrix input, its cells
	upper    []byte
}

func (d *decoder) newWideScratch() *wideScratch {
	w := &wideScratch{
		whole:    make([]*fastjson.Value, len(d.sig.Inputs)),
		features: make([][]*fastjson.Value, len(d.sig.Inputs)),
	}
	for i, names := range d.features {
		if names != nil {
			w.features[i] = make([]*fastjson.Value, len(names))
		}
	}
	return w
}

// wideRow fills row r from one object keyed by argument name. Names match
// exactly first, then case-insensitively, as unquoted SQL identifiers do.
func (d *decoder) wideRow(b *batch, cols []column, w *wideScratch, r int, id int64, obj *fastjson.Value) error {
	o, _ := obj.Object()
	clear(w.whole)
	for _, f := range w.features {
		clear(f)
	}
	var err error
	o.Visit(func(key []byte, v *fastjson.Value) {
		if err != nil {
			return
		}
		if string(key) == "_ID" {
			if b.echo == nil {
				b.echo = make([][]byte, len(b.rowIDs))
			}
			b.echo[r] = v.MarshalTo(nil)
			return
		}
		at, ok := d.byName[string(key)]
		if !ok {
			w.upper = appendUpper(w.upper[:0], key)
			at, ok = d.byUpper[string(w.upper)]
		}
		if !ok {
			err = inputErr(id, string(key), "unknown column; expected %s", d.usage)
			return
		}
		var slot **fastjson.Value
		switch a := d.args[max(at, 0)]; {
		case at < 0:
			slot = &w.whole[-1-at]
		case a.Feature < 0:
			slot = &w.whole[a.Input]
		default:
			slot = &w.features[a.Input][a.Feature]
		}
		if *slot != nil {
			err = inputErr(id, string(key), "given twice")
			return
		}
		*slot = v
	})
	if err != nil {
		return err
	}
	for i, in := range d.sig.Inputs {
		feats := w.features[i]
		given, missing := 0, -1
		for j, v := range feats {
			if v != nil {
				given++
			} else if missing < 0 {
				missing = j
			}
		}
		switch {
		case w.whole[i] != nil && given > 0:
			return inputErr(id, in.Name, "given both whole and as features; send one or the other")
		case w.whole[i] != nil:
			if err := d.setWhole(b, cols, i, r, id, in.Name, w.whole[i]); err != nil {
				return err
			}
		case given > 0 && missing < 0:
			if err := d.setFeatures(b, cols, i, r, id, feats); err != nil {
				return err
			}
		case given > 0:
			return inputErr(id, d.features[i][missing], "missing column")
		case len(feats) > 0:
			return inputErr(id, d.features[i][0], "missing column")
		default:
			return inputErr(id, in.Name, "missing column")
		}
	}
	return nil
}

func appendUpper(dst, s []byte) []byte {
	for _, c := range s {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// setFeatures writes F scalar cells into row r of feature-matrix input i.
func (d *decoder) setFeatures(b *batch, cols []column, i, r int, id int64, cells []*fastjson.Value) error {
	if err := d.ensure(b, cols, i, model.Shape{int64(len(cells))}); err != nil {
		return err
	}
	names := d.features[i]
	base := r * len(cells)
	for j, v := range cells {
		if err := cols[i].set(base+j, v); err != nil {
			return inputErr(id, names[j], "%v", err)
		}
	}
	return nil
}

// setWhole writes one cell holding input i's whole row value: a scalar, or
// an array (nested to the row shape, or flat) for a vector input.
func (d *decoder) setWhole(b *batch, cols []column, i, r int, id int64, name string, v *fastjson.Value) error {
	in := d.sig.Inputs[i]
	rowShape := in.RowShape()
	if len(rowShape) == 0 {
		if err := d.ensure(b, cols, i, nil); err != nil {
			return err
		}
		if err := cols[i].set(r, v); err != nil {
			return inputErr(id, name, "%v", err)
		}
		return nil
	}
	if v.Type() != fastjson.TypeArray {
		return inputErr(id, name, "expected an array of shape %s, got %s", rowShape, describe(v))
	}
	if cols[i].set == nil {
		shape, err := resolveShape(rowShape, v)
		if err != nil {
			return inputErr(id, name, "%v", err)
		}
		if err := d.ensure(b, cols, i, shape); err != nil {
			return err
		}
	}
	shape := b.inputs[i].Shape[1:]
	n := shape.Elements()
	if err := fillArray(cols[i], r*n, shape, v); err != nil {
		return inputErr(id, name, "%v (expected shape %s)", err, shape)
	}
	return nil
}

// ensure allocates input i's tensor with the given row shape the first time
// a row reaches it.
func (d *decoder) ensure(b *batch, cols []column, i int, rowShape model.Shape) error {
	if cols[i].set != nil {
		return nil
	}
	shape := append(model.Shape{int64(len(b.rowIDs))}, rowShape...)
	t, err := model.NewTensor(d.sig.Inputs[i].DType, shape)
	if err != nil {
		return fmt.Errorf("input %q: %w", d.sig.Inputs[i].Name, err)
	}
	b.inputs[i] = t
	cols[i] = newColumn(t)
	return nil
}

// resolveShape fills a row shape's open dimensions from the first row's
// nested arrays; a flat array fills a one-dimensional row.
func resolveShape(rowShape model.Shape, v *fastjson.Value) (model.Shape, error) {
	out := make(model.Shape, len(rowShape))
	cur := v
	for k, dim := range rowShape {
		arr, err := cur.Array()
		if err != nil {
			if dim < 0 {
				return nil, fmt.Errorf("cannot tell dimension %d of the shape %s from a flat array: nest the arrays", k+1, rowShape)
			}
			out[k] = dim
			continue
		}
		if dim < 0 {
			out[k] = int64(len(arr))
		} else {
			out[k] = dim
		}
		if len(arr) == 0 {
			if k < len(rowShape)-1 {
				return nil, fmt.Errorf("an empty array cannot fill shape %s", rowShape)
			}
			break
		}
		cur = arr[0]
	}
	return out, nil
}

// fillArray writes v, nested to shape or flat, at element offset at.
func fillArray(c column, at int, shape model.Shape, v *fastjson.Value) error {
	arr, err := v.Array()
	if err != nil {
		return fmt.Errorf("expected an array, got %s", describe(v))
	}
	n := shape.Elements()
	if len(shape) > 1 && len(arr) == n && (n == 0 || arr[0].Type() != fastjson.TypeArray) {
		shape = model.Shape{int64(n)}
	}
	if len(arr) != int(shape[0]) {
		return fmt.Errorf("an array has %d elements where %d belong", len(arr), shape[0])
	}
	if len(shape) == 1 {
		for k, e := range arr {
			if err := c.set(at+k, e); err != nil {
				return fmt.Errorf("element %d: %w", k, err)
			}
		}
		return nil
	}
	stride := shape[1:].Elements()
	for k, e := range arr {
		if err := fillArray(c, at+k*stride, shape[1:], e); err != nil {
			return err
		}
	}
	return nil
}

// column writes JSON values into one tensor with its element type fixed,
// so the type is chosen once per batch, not once per value.
type column struct {
	set func(i int, v *fastjson.Value) error
}

func newColumn(t model.Tensor) column {
	switch d := t.Data.(type) {
	case []float32:
		return column{func(i int, v *fastjson.Value) error {
			f, err := toFloat(v, t.DType)
			d[i] = float32(f)
			return err
		}}
	case []float64:
		return column{func(i int, v *fastjson.Value) error {
			f, err := toFloat(v, t.DType)
			d[i] = f
			return err
		}}
	case []int8:
		return intColumn(d, t.DType, math.MinInt8, math.MaxInt8)
	case []int16:
		return intColumn(d, t.DType, math.MinInt16, math.MaxInt16)
	case []int32:
		return intColumn(d, t.DType, math.MinInt32, math.MaxInt32)
	case []int64:
		return intColumn(d, t.DType, math.MinInt64, math.MaxInt64)
	case []uint8:
		return intColumn(d, t.DType, 0, math.MaxUint8)
	case []uint16:
		return intColumn(d, t.DType, 0, math.MaxUint16)
	case []uint32:
		return intColumn(d, t.DType, 0, math.MaxUint32)
	case []uint64:
		return column{func(i int, v *fastjson.Value) error {
			n, err := toUint(v)
			d[i] = n
			return err
		}}
	case []bool:
		return column{func(i int, v *fastjson.Value) error {
			switch v.Type() {
			case fastjson.TypeTrue:
				d[i] = true
			case fastjson.TypeFalse:
				d[i] = false
			default:
				return fmt.Errorf("expected BOOLEAN, got %s", describe(v))
			}
			return nil
		}}
	case []string:
		return column{func(i int, v *fastjson.Value) error {
			s, err := v.StringBytes()
			if err != nil {
				return fmt.Errorf("expected VARCHAR, got %s", describe(v))
			}
			d[i] = string(s)
			return nil
		}}
	}
	panic(fmt.Sprintf("server: no column for %T", t.Data))
}

func intColumn[T int8 | int16 | int32 | int64 | uint8 | uint16 | uint32](d []T, dt model.DType, lo, hi int64) column {
	return column{func(i int, v *fastjson.Value) error {
		n, err := toInt(v, dt, lo, hi)
		d[i] = T(n)
		return err
	}}
}

// toFloat accepts a JSON number, or a string holding one (the gateway
// sends numbers too large for JSON as strings).
func toFloat(v *fastjson.Value, dt model.DType) (float64, error) {
	switch v.Type() {
	case fastjson.TypeNumber:
		return v.Float64()
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		f, err := strconv.ParseFloat(strings.TrimSpace(string(s)), 64)
		if err != nil {
			return 0, fmt.Errorf("expected %s, got string %q", dt.SQLType(), s)
		}
		return f, nil
	}
	return 0, fmt.Errorf("expected %s, got %s", dt.SQLType(), describe(v))
}

// toInt accepts a whole JSON number (5 or 5.0) or a string holding one,
// within the input type's range.
func toInt(v *fastjson.Value, dt model.DType, lo, hi int64) (int64, error) {
	var n int64
	switch v.Type() {
	case fastjson.TypeNumber:
		var err error
		if n, err = v.Int64(); err != nil {
			f, ferr := v.Float64()
			if ferr != nil || f != math.Trunc(f) || f < -(1<<63) || f >= 1<<63 {
				return 0, fmt.Errorf("expected a whole number for %s (%s), got %s", dt.SQLType(), dt, v)
			}
			n = int64(f)
		}
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		var err error
		if n, err = strconv.ParseInt(strings.TrimSpace(string(s)), 10, 64); err != nil {
			return 0, fmt.Errorf("expected a whole number for %s (%s), got string %q", dt.SQLType(), dt, s)
		}
	default:
		return 0, fmt.Errorf("expected %s (%s), got %s", dt.SQLType(), dt, describe(v))
	}
	if n < lo || n > hi {
		return 0, fmt.Errorf("%d is out of range for %s", n, dt)
	}
	return n, nil
}

func toUint(v *fastjson.Value) (uint64, error) {
	switch v.Type() {
	case fastjson.TypeNumber:
		if n, err := v.Uint64(); err == nil {
			return n, nil
		}
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		if n, err := strconv.ParseUint(strings.TrimSpace(string(s)), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, fmt.Errorf("expected a whole number from 0 to %d (uint64), got %s", uint64(math.MaxUint64), describe(v))
}

// describe names a JSON value for an error message, quoting short ones.
func describe(v *fastjson.Value) string {
	switch v.Type() {
	case fastjson.TypeNull:
		return "null"
	case fastjson.TypeObject:
		return "an object"
	case fastjson.TypeArray:
		return "an array"
	case fastjson.TypeString:
		s, _ := v.StringBytes()
		if len(s) > 40 {
			return fmt.Sprintf("string %q...", s[:40])
		}
		return fmt.Sprintf("string %q", s)
	case fastjson.TypeTrue, fastjson.TypeFalse:
		return "boolean " + v.String()
	}
	return "number " + v.String()
}
