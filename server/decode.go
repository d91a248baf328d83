package server

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"runtime"
	"runtime/metrics"
	"strconv"
	"strings"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/model"
)

// inputErr is a caller's mistake, naming the row (-1: none) and the
// column ("": none) at fault.
func inputErr(row int64, column, format string, args ...any) *bind.Error {
	return bind.Errorf(row, column, format, args...)
}

// batch is a decoded request: the caller's row numbers and one tensor per
// model input, rows in the caller's order.
type batch struct {
	rowIDs []int64
	inputs []model.Tensor
	// echo holds, per row, the raw JSON of a wide row's _ID key, if any.
	echo [][]byte
	// parts is how many parts the rows were decoded in, in parallel (0:
	// in order).
	parts int
}

// decoder turns a request body into input tensors for one model. It
// accepts the SQL gateway's rows ({"data": [[row, args...]]}, flat or
// wide) and the dataframe_split and dataframe_records shapes; which name
// fills which input, and the value rules, are bind's.
type decoder struct {
	sig   model.Signature
	names *bind.Names
	// floats keeps large FP32 input tensors' memory between requests
	// (batch.release gives it back).
	floats floatPool
}

func newDecoder(sig model.Signature) *decoder {
	return &decoder{sig: sig, names: bind.NewNames(sig)}
}

// newTensor is a tensor for decoded rows: an FP32 one large enough to
// pool from the pool, its elements as the last request left them (every
// element of a row read is written, and rows beyond are cut off).
func (d *decoder) newTensor(dt model.DType, shape model.Shape) (model.Tensor, error) {
	if n := shape.Elements(); dt == model.Float32 && n >= minPooledFloats && n <= maxPooledFloats {
		return model.Tensor{DType: dt, Shape: shape, Data: d.floats.get(int(n))}, nil
	}
	return model.NewTensor(dt, shape)
}

// release gives a batch's tensors' memory back to the decoder's pool,
// once nothing reads them (admission's RunBorrowed says when); the batch's
// inputs must not be read after.
func (d *decoder) release(b *batch) {
	for _, t := range b.inputs {
		d.floats.put(t)
	}
}

// decodeOptions are what a function allows beyond its signature.
type decodeOptions struct {
	// nullAsNaN reads null for a float argument as NaN.
	nullAsNaN bool
	// slowWide reads every wide row by looking its keys up (tests
	// compare it with reading in the learned order).
	slowWide bool
	// parts is how many parts a large body's rows are cut into at most
	// (parallel.go): 0, as many as cores are idle; 1, none. Tests set
	// it, and partBytes (0: the default), to compare the two.
	parts     int
	partBytes int
}

// decoding is the state of one decode. Rows are not counted ahead: the
// tensors are sized from a guess and grow when a row falls beyond them.
type decoding struct {
	*decoder
	opts    decodeOptions
	b       *batch
	cols    []column
	capRows int // rows the tensors have room for
	slots   *slots
	upper   []byte
	// inPart is set on the decoding of one part of a body decoded in
	// parallel (parallel.go): its rows have a fixed room in the
	// tensors, from row first.
	inPart bool
	first  int
	// order is the keys of the first wide row read whole, in its order:
	// the rows after it, which a table's rows almost always match key
	// for key, are read in one pass against it (wideRowInOrder).
	order *keyOrder
}

// keyOrder is a wide row's keys, as they appear (no escapes), and the
// target each names; a target of Input -1 is the row's _ID.
type keyOrder struct {
	keys    [][]byte
	targets []bind.Target
}

// slots hold, for one wide row or record, where each argument's value
// starts in the body (-1: absent).
type slots struct {
	whole    []int
	features [][]int
}

func (d *decoding) newSlots() *slots {
	w := &slots{whole: make([]int, len(d.sig.Inputs)), features: make([][]int, len(d.sig.Inputs))}
	for i := range d.sig.Inputs {
		if names := d.names.Features(i); names != nil {
			w.features[i] = make([]int, len(names))
		}
	}
	return w
}

func (w *slots) reset() {
	for i := range w.whole {
		w.whole[i] = -1
	}
	for _, f := range w.features {
		for j := range f {
			f[j] = -1
		}
	}
}

// at returns the position a target's value is recorded in.
func (w *slots) at(t bind.Target) *int {
	if t.Whole() {
		return &w.whole[t.Input]
	}
	return &w.features[t.Input][t.Feature]
}

// decode parses a request body into a batch.
func (d *decoder) decode(body []byte, opts decodeOptions) (*batch, error) {
	st := &decoding{decoder: d, opts: opts}
	s := &scanner{b: body}
	if s.kind() != kindObject {
		if probe := *s; probe.skip() != nil || probe.end() != nil {
			return nil, inputErr(-1, "", "the body is not valid JSON")
		}
		return nil, inputErr(-1, "", `the body must be a JSON object such as {"data": [[0, ...]]}, got %s`, s.describe())
	}
	var shapes []string
	var split, records, params *scanner
	err := s.members(func(key []byte) error {
		switch k := string(key); k {
		case "data", "dataframe_split", "dataframe_records":
			shapes = append(shapes, k)
			if len(shapes) > 1 {
				return inputErr(-1, "", "the body holds both %q and %q; send one", shapes[0], k)
			}
			at := *s
			switch k {
			case "data":
				return st.rows(s)
			case "dataframe_split":
				split = &at
			default:
				records = &at
			}
		case "params":
			at := *s
			params = &at
		}
		return s.skip()
	})
	if err == nil {
		err = s.end()
	}
	if err != nil {
		return nil, asInputError(err)
	}
	if len(shapes) == 0 {
		return nil, inputErr(-1, "", `the body has no "data" key; send {"data": [[row, arg, ...], ...]} (or dataframe_split, dataframe_records)`)
	}
	if params != nil {
		if err := checkParams(params); err != nil {
			return nil, err
		}
	}
	switch {
	case split != nil:
		err = st.split(split)
	case records != nil:
		err = st.records(records)
	}
	if err != nil {
		return nil, asInputError(err)
	}
	if err := st.finish(); err != nil {
		return nil, err
	}
	return st.b, nil
}

func asInputError(err error) error {
	var in *bind.Error
	if errors.As(err, &in) {
		return in
	}
	return inputErr(-1, "", "%v", err)
}

// checkParams accepts an empty params object: ONNX models take no
// parameters beside their inputs, so any named one is a mistake.
func checkParams(s *scanner) error {
	if s.kind() != kindObject {
		return inputErr(-1, "", `"params" must be an object, got %s`, s.describe())
	}
	var names []string
	err := s.members(func(key []byte) error {
		names = append(names, string(key))
		return s.skip()
	})
	if err != nil {
		return err
	}
	if len(names) > 0 {
		return inputErr(-1, "", "params: this model takes no parameters, got %s", strings.Join(names, ", "))
	}
	return nil
}

// start begins a batch with room for capRows rows.
func (d *decoding) start(capRows int) {
	d.capRows = max(capRows, 1)
	d.b = &batch{rowIDs: make([]int64, 0, d.capRows), inputs: make([]model.Tensor, len(d.sig.Inputs))}
	d.cols = make([]column, len(d.sig.Inputs))
}

// row makes room for row r, whose number is id. A part of a body
// decoded in parallel has a fixed room (errPartFull past it).
func (d *decoding) row(r int, id int64) error {
	if r >= d.capRows {
		if d.inPart {
			return errPartFull
		}
		d.grow(max(2*d.capRows, r+1))
	}
	d.b.rowIDs = append(d.b.rowIDs, id)
	return nil
}

// grow moves the tensors into room for capRows rows.
func (d *decoding) grow(capRows int) {
	for i, t := range d.b.inputs {
		if d.cols[i].set == nil {
			continue
		}
		bigger, _ := d.newTensor(t.DType, append(model.Shape{int64(capRows)}, t.Shape[1:]...))
		model.CopyRows(bigger, t)
		d.floats.put(t) // nothing else holds it yet
		d.b.inputs[i] = bigger
		d.cols[i] = newColumn(bigger, d.opts)
	}
	d.capRows = capRows
}

// finish trims the tensors to the rows read.
func (d *decoding) finish() error {
	n := len(d.b.rowIDs)
	if n == 0 {
		return inputErr(-1, "", "the request holds no rows")
	}
	for i, t := range d.b.inputs {
		d.b.inputs[i] = t.SliceRows(0, n)
	}
	if d.b.echo != nil {
		for len(d.b.echo) < n {
			d.b.echo = append(d.b.echo, nil)
		}
	}
	return nil
}

// rows decodes "data": [[row, args...], ...], each row flat or wide.
// yieldBytes is how much of a body is decoded between yields to other
// goroutines: about a tenth of a millisecond of work.
const yieldBytes = 32 << 10

// yielder lets goroutines waiting for a core run first. Only when
// some wait: a yield with a core idle wakes that core for nothing, at the
// cost of a system call (a tenth of a large decode's time when it was
// done every 32 KiB); counting the waiting costs a few tens of
// nanoseconds.
type yielder []metrics.Sample

// yieldIfWaiting takes y, made on first use (small bodies never yield).
func (y *yielder) yieldIfWaiting() {
	if *y == nil {
		*y = yielder{{Name: "/sched/goroutines/runnable:goroutines"}}
	}
	metrics.Read(*y)
	if v := (*y)[0].Value; v.Kind() == metrics.KindUint64 && v.Uint64() > 0 {
		runtime.Gosched()
	}
}

func (d *decoding) rows(s *scanner) error {
	if s.kind() != kindArray {
		return inputErr(-1, "", `"data" must be an array of rows, got %s`, s.describe())
	}
	if probe := *s; probe.consume('[') && probe.peek() == ']' {
		return inputErr(-1, "", `"data" holds no rows`)
	}
	d.start(64)
	first, yielded := s.i, s.i
	var y yielder
	return s.elements(func(r int) error {
		if s.i-yielded >= yieldBytes {
			// A large body takes milliseconds to decode; on a busy
			// machine the goroutines waiting for a core (a request to
			// refuse, a dispatcher with a batch for an idle worker) go
			// first, not after this body's whole time slice.
			y.yieldIfWaiting()
			yielded = s.i
		}
		if r == 1 {
			// A large body's other rows on every idle core: done, the
			// scanner stands after the last row.
			if d.inParallel(s, s.i-first) {
				return nil
			}
			// The first row's size tells about how many follow.
			if guess := (len(s.b)-first)/max(s.i-first, 1)*9/8 + 8; guess > d.capRows {
				d.grow(guess)
			}
		}
		return d.dataRow(s, r)
	})
}

// dataRow decodes row r of "data", the scanner standing on it.
func (d *decoding) dataRow(s *scanner, r int) error {
	if s.kind() == kindEnd {
		return s.errSyntax("a row")
	}
	if s.kind() != kindArray {
		return inputErr(int64(r), "", "each row must be an array [row number, arguments...], got %s", s.describe())
	}
	rowStart := *s
	s.i++ // [
	if s.peek() == ']' {
		return inputErr(int64(r), "", "the row is empty; it needs a row number and the arguments")
	}
	id, err := rowNumber(s)
	if err != nil {
		return inputErr(int64(r), "", "%v", err)
	}
	if err := d.row(r, id); err != nil {
		return err
	}
	if !s.consume(',') {
		if s.peek() == ']' {
			return d.arity(rowStart, id)
		}
		return bind.AtRow(id, s.errSyntax("','"))
	}
	if s.kind() == kindObject {
		// A row whose keys are the learned order's, in one pass.
		if d.order != nil {
			saved := *s
			if d.wideRowInOrder(s, r) && s.consume(']') {
				return nil
			}
			*s = saved
		}
		probe := *s
		err := probe.skip()
		if err != nil {
			if deep := (*DepthError)(nil); errors.As(err, &deep) {
				return bind.AtRow(id, err)
			}
		}
		if err == nil && probe.peek() == ']' {
			if err := d.wideRow(s, r, id); err != nil {
				return err
			}
			return s.expect(']')
		}
	}
	return d.flatRow(s, rowStart, r, id)
}

// rowNumber reads element 0 of a row; some clients send 0.0 for 0.
func rowNumber(s *scanner) (int64, error) {
	if s.kind() != kindNumber {
		return 0, fmt.Errorf("the row number (element 0) must be a number, got %s", s.describe())
	}
	b, err := s.number()
	if err != nil {
		return 0, err
	}
	id, err := parseInt(b)
	if err != nil {
		return 0, fmt.Errorf("the row number (element 0) must be a whole number, got %s", b)
	}
	return id, nil
}

// flatRow decodes the positional arguments of row r, the scanner standing
// on the first one. A feature-matrix input takes its F scalars or one
// array.
func (d *decoding) flatRow(s *scanner, rowStart scanner, r int, id int64) error {
	for i := range d.sig.Inputs {
		if i > 0 && !s.consume(',') {
			return d.arity(rowStart, id)
		}
		if s.peek() == ']' {
			return d.arity(rowStart, id)
		}
		if names := d.names.Features(i); names != nil && s.kind() != kindArray {
			if err := d.ensure(i, model.Shape{int64(len(names))}); err != nil {
				return err
			}
			f32, _ := d.b.inputs[i].Data.([]float32)
			j0 := 0
			if f32 != nil {
				j0 = s.floats(f32[r*len(names) : (r+1)*len(names)])
			}
			for j := j0; j < len(names); j++ {
				name := names[j]
				if j > 0 && !s.consume(',') {
					return d.arity(rowStart, id)
				}
				if s.peek() == ']' {
					return d.arity(rowStart, id)
				}
				if err := d.setFeature(i, r*len(names)+j, s, f32); err != nil {
					return inputErr(id, name, "%v", err)
				}
			}
			continue
		}
		if err := d.setWhole(s, i, r, id, d.sig.Inputs[i].Name); err != nil {
			return err
		}
	}
	if s.consume(']') {
		return nil
	}
	if s.peek() == ',' {
		return d.arity(rowStart, id)
	}
	return bind.AtRow(id, s.errSyntax("']'"))
}

// setFeature reads one feature's value into element at of input i. FP32
// features (f32, the tensor's data), the common wide table, take a plain
// number straight, with no call through the column; anything else (a
// string, a null, a mistake) goes through the column's rules.
func (d *decoding) setFeature(i, at int, s *scanner, f32 []float32) error {
	if f32 != nil {
		if s.i < len(s.b) && s.b[s.i] <= ' ' {
			s.ws()
		}
		if f, next, ok := quickFloat(s.b, s.i, 32); ok {
			f32[at] = float32(f)
			s.i = next
			return nil
		}
		if c := s.peek(); c == '-' || c >= '0' && c <= '9' {
			probe := *s
			if f, err := s.float(32); err == nil {
				f32[at] = float32(f)
				return nil
			}
			*s = probe
		}
	}
	return d.cols[i].set(at, s)
}

// arity reports a row with the wrong number of arguments.
func (d *decoding) arity(rowStart scanner, id int64) error {
	n, err := rowStart.count()
	if err != nil {
		return bind.AtRow(id, err)
	}
	return inputErr(id, "", "expected %s, got %d", d.names.Usage(), n-1)
}

// wideRow decodes one object keyed by argument name into row r by
// looking each key up, recording where its value is, and reading the
// values in the signature's order (which also words any mistake the same
// way for every row). The first row read so teaches the key order the
// next rows are tried against (wideRowInOrder).
func (d *decoding) wideRow(s *scanner, r int, id int64) error {
	if d.slots == nil {
		d.slots = d.newSlots()
	}
	w := d.slots
	w.reset()
	var order *keyOrder
	if d.order == nil && !d.opts.slowWide {
		order = &keyOrder{}
	}
	err := s.members(func(key []byte) error {
		if order != nil {
			if !plainKey(key) {
				order = nil // compared as sent, it could match invalid JSON
			} else if within(s.b, key) {
				// Sent without escapes, the key is the body's own
				// bytes, which outlive this decode.
				order.keys = append(order.keys, key)
			} else {
				// Unescaped into the scanner's buffer, which the next
				// escaped string overwrites.
				order.keys = append(order.keys, append([]byte(nil), key...))
			}
		}
		if string(key) == "_ID" {
			if order != nil {
				order.targets = append(order.targets, bind.Target{Input: -1})
			}
			raw, err := s.raw()
			if err != nil {
				return err
			}
			d.echo(r, raw)
			return nil
		}
		t, ok := d.names.LookupBytes(key, &d.upper)
		if !ok {
			return inputErr(id, string(key), "unknown column; expected %s", d.names.Usage())
		}
		if order != nil {
			order.targets = append(order.targets, t)
		}
		pos := w.at(t)
		if *pos >= 0 {
			return inputErr(id, string(key), "given twice")
		}
		s.ws()
		*pos = s.i
		return s.skip()
	})
	if err != nil {
		return bind.AtRow(id, err)
	}
	if err := d.fromSlots(s, w, r, id); err != nil {
		return err
	}
	if order != nil {
		d.order = order
	}
	return nil
}

// echo keeps row r's _ID as sent.
func (d *decoding) echo(r int, raw []byte) {
	for len(d.b.echo) <= r {
		d.b.echo = append(d.b.echo, nil)
	}
	d.b.echo[r] = append([]byte(nil), raw...)
}

// plainKey says whether a key is sent the same escaped or not: no quote,
// backslash or control character. Only such keys are learned, so that
// bytes that match one are a valid JSON string (a key that came with
// escapes is learned as plain text, and the next row's escaped bytes do
// not match it: that row takes the slow path).
func plainKey(key []byte) bool {
	for _, c := range key {
		if c == '"' || c == '\\' || c < 0x20 {
			return false
		}
	}
	return true
}

// wideRowInOrder reads row r's object, the scanner on it, if its keys are
// the learned order's, byte for byte, each value read as fromSlots would
// read it. It reports false, the tensors possibly written in part (the
// slow path then writes the whole row again), at the first difference or
// mistake.
func (d *decoding) wideRowInOrder(s *scanner, r int) bool {
	if !s.consume('{') {
		return false
	}
	for k, key := range d.order.keys {
		if k > 0 && !s.consume(',') {
			return false
		}
		s.ws()
		b, at := s.b, s.i
		if at+len(key)+2 > len(b) || b[at] != '"' || b[at+1+len(key)] != '"' || !bytes.Equal(b[at+1:at+1+len(key)], key) {
			return false
		}
		s.i = at + len(key) + 2
		if !s.consume(':') {
			return false
		}
		t := d.order.targets[k]
		switch {
		case t.Input < 0:
			raw, err := s.raw()
			if err != nil {
				return false
			}
			d.echo(r, raw)
		case t.Whole():
			if d.setWhole(s, t.Input, r, 0, d.sig.Inputs[t.Input].Name) != nil {
				return false
			}
		default:
			n := len(d.names.Features(t.Input))
			f32, _ := d.b.inputs[t.Input].Data.([]float32)
			if d.setFeature(t.Input, r*n+t.Feature, s, f32) != nil {
				return false
			}
		}
	}
	return s.consume('}')
}

// fromSlots decodes the values a wide row's slots point at.
func (d *decoding) fromSlots(s *scanner, w *slots, r int, id int64) error {
	probe := *s
	at := func(pos int) *scanner {
		probe.i = pos
		return &probe
	}
	for i, in := range d.sig.Inputs {
		feats := w.features[i]
		given, missing := 0, -1
		for j, pos := range feats {
			if pos >= 0 {
				given++
			} else if missing < 0 {
				missing = j
			}
		}
		switch {
		case w.whole[i] >= 0 && given > 0:
			return inputErr(id, in.Name, "given both whole and as features; send one or the other")
		case w.whole[i] >= 0:
			if err := d.setWhole(at(w.whole[i]), i, r, id, in.Name); err != nil {
				return err
			}
		case given > 0 && missing < 0:
			if err := d.ensure(i, model.Shape{int64(len(feats))}); err != nil {
				return err
			}
			f32, _ := d.b.inputs[i].Data.([]float32)
			for j, pos := range feats {
				if err := d.setFeature(i, r*len(feats)+j, at(pos), f32); err != nil {
					return inputErr(id, d.names.Features(i)[j], "%v", err)
				}
			}
		case given > 0:
			return inputErr(id, d.names.Features(i)[missing], "missing column")
		case feats != nil:
			return inputErr(id, d.names.Features(i)[0], "missing column")
		default:
			return inputErr(id, in.Name, "missing column")
		}
	}
	return nil
}

// records decodes "dataframe_records": [{column: value}, ...]; row
// numbers are positions.
func (d *decoding) records(s *scanner) error {
	if s.kind() != kindArray {
		return inputErr(-1, "", `"dataframe_records" must be an array of objects, got %s`, s.describe())
	}
	n, err := s.count()
	if err != nil {
		return err
	}
	d.start(n)
	return s.elements(func(r int) error {
		if err := d.row(r, int64(r)); err != nil {
			return err
		}
		if s.kind() != kindObject {
			return inputErr(int64(r), "", "each record must be an object, got %s", s.describe())
		}
		// A record whose keys are the learned order's, in one pass.
		if d.order != nil {
			saved := *s
			if d.wideRowInOrder(s, r) {
				return nil
			}
			*s = saved
		}
		return d.wideRow(s, r, int64(r))
	})
}

// split decodes "dataframe_split": {"columns": [...], "index": [...],
// "data": [[...], ...]}; row numbers come from index, else positions.
func (d *decoding) split(s *scanner) error {
	if s.kind() != kindObject {
		return inputErr(-1, "", `"dataframe_split" must be an object, got %s`, s.describe())
	}
	f, err := s.fields("columns", "index", "data")
	if err != nil {
		return err
	}
	columns, index, data := f[0], f[1], f[2]
	if columns == nil || data == nil {
		return inputErr(-1, "", `"dataframe_split" needs "columns" and "data"`)
	}
	// The columns are bound once for all rows.
	var names []string
	err = columns.elements(func(j int) error {
		name, err := columns.str()
		if err != nil {
			return inputErr(-1, "", `"columns" must hold strings: %v`, err)
		}
		if _, ok := d.names.LookupBytes(name, &d.upper); !ok {
			return inputErr(-1, string(name), "unknown column; expected %s", d.names.Usage())
		}
		names = append(names, string(name))
		return nil
	})
	if err != nil {
		return err
	}
	bound, err := d.names.Bind(names)
	if err != nil {
		return err
	}
	n, err := data.count()
	if err != nil {
		return err
	}
	d.start(n)
	ids := make([]int64, n)
	for r := range ids {
		ids[r] = int64(r)
	}
	if index != nil {
		if err := readIndex(index, ids); err != nil {
			return err
		}
	}
	// The rows are positional: point the slots at each row's cells.
	row := d.newSlots()
	return data.elements(func(r int) error {
		id := ids[r]
		if err := d.row(r, id); err != nil {
			return err
		}
		if data.kind() != kindArray {
			return inputErr(id, "", "each row of dataframe_split data must be an array, got %s", data.describe())
		}
		row.reset()
		err := data.elements(func(j int) error {
			if j >= len(bound.Order) {
				return inputErr(id, "", "the row has more values than the %d columns", len(bound.Order))
			}
			data.ws()
			*row.at(bound.Order[j]) = data.i
			return data.skip()
		})
		if err != nil {
			return bind.AtRow(id, err)
		}
		return d.fromSlots(data, row, r, id)
	})
}

// readIndex reads dataframe_split's index into ids, one per row.
func readIndex(s *scanner, ids []int64) error {
	count, err := s.count()
	if err != nil {
		return err
	}
	if count != len(ids) {
		return inputErr(-1, "", `"index" holds %d entries for %d rows`, count, len(ids))
	}
	return s.elements(func(r int) error {
		id, err := rowNumber(s)
		if err != nil {
			return inputErr(int64(r), "", `"index": %v`, strings.ReplaceAll(err.Error(), "the row number (element 0)", "an index entry"))
		}
		ids[r] = id
		return nil
	})
}

// setWhole writes one cell holding input i's whole row value: a scalar, or
// an array (nested to the row shape, or flat) for a vector input.
func (d *decoding) setWhole(s *scanner, i, r int, id int64, name string) error {
	rowShape := d.sig.Inputs[i].RowShape()
	if len(rowShape) == 0 {
		if err := d.ensure(i, nil); err != nil {
			return err
		}
		if err := d.cols[i].set(r, s); err != nil {
			return inputErr(id, name, "%v", err)
		}
		return nil
	}
	if s.kind() != kindArray {
		return inputErr(id, name, "expected an array of shape %s, got %s", rowShape, s.describe())
	}
	if d.cols[i].set == nil {
		shape, err := resolveShape(rowShape, *s)
		if err != nil {
			return inputErr(id, name, "%v", err)
		}
		if err := d.ensure(i, shape); err != nil {
			return err
		}
	}
	shape := d.b.inputs[i].Shape[1:]
	if err := fillArray(s, d.cols[i], r*shape.Elements(), shape); err != nil {
		return inputErr(id, name, "%v (expected shape %s)", err, shape)
	}
	return nil
}

// ensure allocates input i's tensor with the given row shape the first time
// a row reaches it.
func (d *decoding) ensure(i int, rowShape model.Shape) error {
	if d.cols[i].set != nil {
		return nil
	}
	shape := append(model.Shape{int64(d.capRows)}, rowShape...)
	t, err := d.newTensor(d.sig.Inputs[i].DType, shape)
	if err != nil {
		return fmt.Errorf("input %q: %w", d.sig.Inputs[i].Name, err)
	}
	d.b.inputs[i] = t
	d.cols[i] = newColumn(t, d.opts)
	return nil
}

// resolveShape fits the first row's array (probe is a copy; nothing is
// consumed) to a row shape: its nested sizes, as deep as the shape goes,
// fill the open dimensions, or a flat array fills the row in order
// (bind.RowShape).
func resolveShape(rowShape model.Shape, probe scanner) (model.Shape, error) {
	var got model.Shape
	for len(got) < len(rowShape) && probe.kind() == kindArray {
		n, err := probe.count()
		if err != nil {
			return nil, err
		}
		got = append(got, int64(n))
		if n == 0 {
			break
		}
		probe.i++ // into the first element
		probe.ws()
	}
	return bind.RowShape(rowShape, got)
}

// fillArray writes an array, nested to shape or flat, at element at.
func fillArray(s *scanner, c column, at int, shape model.Shape) error {
	if s.kind() != kindArray {
		return fmt.Errorf("expected an array, got %s", s.describe())
	}
	start := *s
	if len(shape) > 1 {
		probe := *s
		probe.i++
		if k := probe.kind(); k != kindArray && k != kindEnd {
			shape = model.Shape{int64(shape.Elements())}
		}
	}
	stride := shape[1:].Elements()
	err := s.elements(func(k int) error {
		if k >= int(shape[0]) {
			return errArrayLength
		}
		if len(shape) == 1 {
			if err := c.set(at+k, s); err != nil {
				return fmt.Errorf("element %d: %w", k, err)
			}
			return nil
		}
		return fillArray(s, c, at+k*stride, shape[1:])
	})
	if err == nil {
		// Too few elements shows after the fact.
		if n, _ := start.count(); n != int(shape[0]) {
			err = errArrayLength
		}
	}
	if errors.Is(err, errArrayLength) {
		n, _ := start.count()
		return fmt.Errorf("an array has %d elements where %d belong", n, shape[0])
	}
	return err
}

var errArrayLength = errors.New("wrong array length")

// column writes JSON values into one tensor with its element type fixed,
// so the type is chosen once per batch, not once per value. set reads the
// value the scanner stands on.
type column struct {
	set func(i int, s *scanner) error
}

func newColumn(t model.Tensor, opts decodeOptions) column {
	switch d := t.Data.(type) {
	case []float32:
		return column{func(i int, s *scanner) error {
			f, err := toFloat(s, t.DType, 32, opts)
			d[i] = float32(f)
			return err
		}}
	case []float64:
		return column{func(i int, s *scanner) error {
			f, err := toFloat(s, t.DType, 64, opts)
			d[i] = f
			return err
		}}
	case []model.Half:
		return column{func(i int, s *scanner) error {
			f, err := toFloat(s, t.DType, 64, opts)
			d[i] = model.ToHalf(f)
			return err
		}}
	case []int8:
		return intColumn(d, t.DType)
	case []int16:
		return intColumn(d, t.DType)
	case []int32:
		return intColumn(d, t.DType)
	case []int64:
		return intColumn(d, t.DType)
	case []uint8:
		return intColumn(d, t.DType)
	case []uint16:
		return intColumn(d, t.DType)
	case []uint32:
		return intColumn(d, t.DType)
	case []uint64:
		return column{func(i int, s *scanner) error {
			n, err := toUint(s)
			d[i] = n
			return err
		}}
	case []bool:
		return column{func(i int, s *scanner) error {
			if s.kind() != kindBool {
				return bind.Mismatch(t.DType, s.describe())
			}
			lit, err := s.literal()
			d[i] = lit == "true"
			return err
		}}
	case []string:
		return column{func(i int, s *scanner) error {
			if s.kind() != kindString {
				return bind.Mismatch(t.DType, s.describe())
			}
			b, err := s.str()
			d[i] = string(b)
			return err
		}}
	}
	panic(fmt.Sprintf("server: no column for %T", t.Data))
}

func intColumn[T int8 | int16 | int32 | int64 | uint8 | uint16 | uint32](d []T, dt model.DType) column {
	lo, hi := bind.Range(dt)
	return column{func(i int, s *scanner) error {
		n, err := toInt(s, dt, lo, hi)
		d[i] = T(n)
		return err
	}}
}

// toFloat accepts a JSON number, or a string holding one (the gateway
// sends numbers too large for JSON as strings); null only where the
// function reads it as NaN.
func toFloat(s *scanner, dt model.DType, bits int, opts decodeOptions) (float64, error) {
	switch s.kind() {
	case kindNumber:
		f, err := s.float(bits)
		if err != nil {
			return 0, fmt.Errorf("expected %s: %w", bind.TypeName(dt), err)
		}
		return f, nil
	case kindString:
		at := *s
		b, err := s.str()
		if err != nil {
			return 0, err
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(string(b)), bits)
		if err != nil {
			return 0, bind.Mismatch(dt, at.describe())
		}
		return f, nil
	case kindNull:
		if !opts.nullAsNaN {
			return 0, bind.NullRefused(dt)
		}
		_, err := s.literal()
		return math.NaN(), err
	}
	return 0, bind.Mismatch(dt, s.describe())
}

// toInt accepts a whole JSON number (5 or 5.0) or a string holding one,
// within the input type's range.
func toInt(s *scanner, dt model.DType, lo, hi int64) (int64, error) {
	at := *s // to describe the value if it is wrong
	var n int64
	switch s.kind() {
	case kindNumber:
		b, err := s.number()
		if err != nil {
			return 0, err
		}
		if n, err = parseInt(b); err != nil {
			return 0, bind.NotWhole(dt, at.describe())
		}
	case kindString:
		b, err := s.str()
		if err != nil {
			return 0, err
		}
		if n, err = strconv.ParseInt(strings.TrimSpace(string(b)), 10, 64); err != nil {
			return 0, bind.NotWhole(dt, at.describe())
		}
	case kindNull:
		return 0, bind.NullRefused(dt)
	default:
		return 0, bind.Mismatch(dt, at.describe())
	}
	if n < lo || n > hi {
		return 0, bind.OutOfRange(n, dt)
	}
	return n, nil
}

func toUint(s *scanner) (uint64, error) {
	at := *s
	var b []byte
	var err error
	switch s.kind() {
	case kindNumber:
		b, err = s.number()
	case kindString:
		b, err = s.str()
	case kindNull:
		return 0, bind.NullRefused(model.Uint64)
	default:
		err = errNotWhole
	}
	if err == nil {
		var n uint64
		if n, err = strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil {
			return n, nil
		}
	}
	return 0, bind.NotWhole(model.Uint64, at.describe())
}
