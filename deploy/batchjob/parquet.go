package batchjob

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"
	"github.com/parquet-go/parquet-go/format"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/internal/parquetguard"
)

// parquetSource reads a Parquet file row group by row group, a few hundred
// rows at a time: the file is never loaded whole.
type parquetSource struct {
	f      *os.File
	file   *parquet.File
	groups []parquet.RowGroup
	g      int // the current row group
	rows   parquet.Rows
	pos    int64 // rows read or skipped so far
	start  int64 // the current group's first row
	buf    []parquet.Row
	names  []string
	// fieldOf maps a leaf column index to its top-level field.
	fieldOf []int
	leaves  []int // per field, its leaf column count
	// slots, per leaf column, what it fills (nil: nothing).
	slots []*parquetSlot
	idCol int // the id's leaf column, or -1
}

type parquetSlot struct {
	t        bind.Target
	column   string
	unsigned bool
	list     bool
	// elemDef is the definition level at which a list element is present;
	// maxDef the one at which it is not null.
	elemDef, maxDef int
	elems           []parquet.Value
	// seen marks a scalar column's value as found in the current row.
	seen bool
}

func openParquet(path string) (*parquetSource, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	if err := parquetguard.Check(f, size); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is not a Parquet file modelserve can read: %w", path, err)
	}
	s := &parquetSource{f: f, buf: make([]parquet.Row, 256), idCol: -1}
	err = func() (err error) {
		defer malformed(&err)
		s.file, err = parquet.OpenFile(f, size, parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true))
		if err != nil {
			return err
		}
		s.groups = s.file.RowGroups()
		index := map[string]int{}
		for _, field := range s.file.Schema().Fields() {
			index[field.Name()] = len(s.names)
			s.names = append(s.names, field.Name())
			s.leaves = append(s.leaves, 0)
		}
		for _, path := range s.file.Schema().Columns() {
			i := index[path[0]]
			s.fieldOf = append(s.fieldOf, i)
			s.leaves[i]++
		}
		return nil
	}()
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s is not a Parquet file: %w", path, err)
	}
	return s, nil
}

// malformed is deferred around calls into parquet-go, which is not
// hardened against hostile files: a panic on malformed data becomes the
// error that stops the run.
func malformed(err *error) {
	if p := recover(); p != nil {
		*err = fmt.Errorf("the Parquet reader failed on malformed data: %v", p)
	}
}

func (s *parquetSource) columns() []string { return s.names }

func (s *parquetSource) bind(b *binding) error {
	s.slots = make([]*parquetSlot, len(s.fieldOf))
	schema := s.file.Schema()
	for leaf, path := range schema.Columns() {
		name := path[0]
		t, bound := b.targets[name]
		isID := name == b.id && b.id != ""
		if !bound && !isID {
			continue
		}
		if s.leaves[s.fieldOf[leaf]] > 1 {
			return fmt.Errorf("column %q is a group of %d values (a struct or a map); modelserve reads columns of values and lists of values", name, s.leaves[s.fieldOf[leaf]])
		}
		col, _ := schema.Lookup(path...)
		elemDef, maxDef, repeated := levels(schema, path)
		if isID {
			if repeated {
				return fmt.Errorf("the id column %q holds lists; ids must be single values", name)
			}
			s.idCol = leaf
			continue
		}
		unsigned := false
		if lt := col.Node.Type().LogicalType(); lt != nil {
			it, ok := lt.Value.(*format.IntType)
			unsigned = ok && !it.IsSigned
		}
		s.slots[leaf] = &parquetSlot{t: t, column: name, list: repeated, elemDef: elemDef, maxDef: maxDef, unsigned: unsigned}
	}
	return nil
}

// levels walks a leaf's path: the definition level of its innermost
// repeated node (where a list element is present), its maximum definition
// level, and whether any node on the way repeats.
func levels(schema *parquet.Schema, path []string) (elemDef, maxDef int, repeated bool) {
	var node parquet.Node = schema
	for _, name := range path {
		for _, f := range node.Fields() {
			if f.Name() == name {
				node = f
				break
			}
		}
		if node.Optional() || node.Repeated() {
			maxDef++
		}
		if node.Repeated() {
			elemDef, repeated = maxDef, true
		}
	}
	return elemDef, maxDef, repeated
}

func (s *parquetSource) read(c *chunk) (err error) {
	defer malformed(&err)
	for !c.full() {
		if s.rows == nil {
			if s.g >= len(s.groups) {
				break
			}
			s.rows = s.groups[s.g].Rows()
			if s.pos > s.start {
				if err := s.rows.SeekToRow(s.pos - s.start); err != nil {
					return fmt.Errorf("reading the input: %w", err)
				}
			}
		}
		n, err := s.rows.ReadRows(s.buf[:min(len(s.buf), c.cap-c.rows)])
		for _, row := range s.buf[:n] {
			if err := s.fill(c, row); err != nil {
				return err
			}
			c.rows++
			s.pos++
		}
		if errors.Is(err, io.EOF) {
			s.nextGroup()
			continue
		}
		if err != nil {
			return fmt.Errorf("reading the input: %w", err)
		}
	}
	if c.rows == 0 {
		return io.EOF
	}
	return nil
}

func (s *parquetSource) nextGroup() {
	s.rows.Close()
	s.rows = nil
	s.start += s.groups[s.g].NumRows()
	s.g++
}

// fill converts one row; its values come ordered by leaf column.
func (s *parquetSource) fill(c *chunk, row parquet.Row) error {
	r := c.rows
	if s.idCol >= 0 {
		id := parquet.NullValue()
		for _, v := range row {
			if v.Column() == s.idCol {
				id = v.Clone()
				break
			}
		}
		c.ids = append(c.ids, id)
	}
	for _, sl := range s.slots {
		if sl != nil {
			sl.elems, sl.seen = sl.elems[:0], false
		}
	}
	for _, v := range row {
		sl := s.slots[v.Column()]
		if sl == nil {
			continue
		}
		if sl.list {
			if v.DefinitionLevel() >= sl.elemDef {
				sl.elems = append(sl.elems, v)
			}
			continue
		}
		col, at, err := c.scalar(sl.t, r)
		if err == nil {
			err = sl.set(col, at, v)
		}
		if err != nil {
			return c.rowErr(r, sl.column, err)
		}
		sl.seen = true
	}
	for _, sl := range s.slots {
		switch {
		case sl == nil:
		case sl.list:
			if err := s.fillList(c, sl, r); err != nil {
				return c.rowErr(r, sl.column, err)
			}
		case !sl.seen:
			// Levels that do not add up: a malformed file.
			return c.rowErr(r, sl.column, errors.New("the row has no value in this column; the file's levels are malformed"))
		}
	}
	return nil
}

// fillList writes a list column's elements, in order, into a whole input.
func (s *parquetSource) fillList(c *chunk, sl *parquetSlot, r int) error {
	if !c.isArray(sl.t) {
		if len(sl.elems) != 1 {
			return fmt.Errorf("a list of %d values where one value belongs", len(sl.elems))
		}
		col, at, err := c.scalar(sl.t, r)
		if err != nil {
			return err
		}
		return sl.set(col, at, sl.elems[0])
	}
	col, base, err := c.flat(sl.t, r, len(sl.elems))
	if err != nil {
		return err
	}
	for k, v := range sl.elems {
		if err := sl.set(col, base+k, v); err != nil {
			return fmt.Errorf("element %d: %w", k, err)
		}
	}
	return nil
}

// set stores one Parquet value with its physical and logical type.
func (sl *parquetSlot) set(col *bind.Column, at int, v parquet.Value) error {
	if v.IsNull() || v.DefinitionLevel() < sl.maxDef {
		return col.Null(at)
	}
	switch v.Kind() {
	case parquet.Boolean:
		return col.Bool(at, v.Boolean())
	case parquet.Int32:
		if sl.unsigned {
			return col.Uint(at, uint64(v.Uint32()))
		}
		return col.Int(at, int64(v.Int32()))
	case parquet.Int64:
		if sl.unsigned {
			return col.Uint(at, v.Uint64())
		}
		return col.Int(at, v.Int64())
	case parquet.Float:
		return col.Float(at, float64(v.Float()))
	case parquet.Double:
		return col.Float(at, v.Double())
	case parquet.ByteArray, parquet.FixedLenByteArray:
		return col.Text(at, string(v.ByteArray()))
	}
	return fmt.Errorf("a Parquet %s value, which modelserve does not read", v.Kind())
}

func (s *parquetSource) skip(n int) (_ int, err error) {
	defer malformed(&err)
	total := s.file.NumRows()
	to := min(s.pos+int64(n), total)
	skipped := int(to - s.pos)
	s.pos = to
	for s.g < len(s.groups) && s.pos >= s.start+s.groups[s.g].NumRows() {
		if s.rows == nil {
			s.rows = s.groups[s.g].Rows()
		}
		s.nextGroup()
	}
	if s.rows != nil {
		if err := s.rows.SeekToRow(s.pos - s.start); err != nil {
			return skipped, fmt.Errorf("reading the input: %w", err)
		}
	}
	return skipped, nil
}

func (s *parquetSource) position() (float64, int64) {
	total := s.file.NumRows()
	if total == 0 {
		return 1, 0
	}
	return float64(s.pos) / float64(total), total
}

func (s *parquetSource) Close() error {
	if s.rows != nil {
		s.rows.Close()
	}
	return s.f.Close()
}
