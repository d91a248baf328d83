package batchjob

import (
	"bufio"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/modelserve/modelserve/bind"
)

// csvSource reads a CSV file whose first line names the columns.
type csvSource struct {
	f      *os.File
	size   int64
	r      *csv.Reader
	header []string
	row    int64 // rows read or skipped so far
	// slots pairs each bound field's index with its target.
	slots []csvSlot
	idAt  int // the id field's index, or -1
}

type csvSlot struct {
	field  int
	t      bind.Target
	column string
}

func openCSV(path string) (*csvSource, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	r := csv.NewReader(bufio.NewReaderSize(f, readBuffer(size)))
	r.ReuseRecord = true
	header, err := r.Read()
	if errors.Is(err, io.EOF) {
		f.Close()
		return nil, fmt.Errorf("%s is empty: a CSV input starts with a line of column names", path)
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading %s's column names: %w", path, err)
	}
	header = append([]string(nil), header...)
	header[0] = strings.TrimPrefix(header[0], "\ufeff") // a byte-order mark, as spreadsheets write
	return &csvSource{f: f, size: size, r: r, header: header, idAt: -1}, nil
}

func (s *csvSource) columns() []string { return s.header }

func (s *csvSource) bind(b *binding) error {
	for i, name := range s.header {
		if t, ok := b.targets[name]; ok {
			s.slots = append(s.slots, csvSlot{field: i, t: t, column: name})
		}
		if name == b.id && b.id != "" {
			s.idAt = i
		}
	}
	return nil
}

func (s *csvSource) read(c *chunk) error {
	for !c.full() {
		rec, err := s.r.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return fmt.Errorf("reading the input: %w", err)
		}
		r := c.rows
		s.row++
		if s.idAt >= 0 {
			c.ids = append(c.ids, idFromText(rec[s.idAt]))
		}
		for _, sl := range s.slots {
			if err := s.set(c, sl.t, r, rec[sl.field]); err != nil {
				return c.rowErr(r, sl.column, err)
			}
		}
		c.rows++
	}
	if c.rows == 0 {
		return io.EOF
	}
	return nil
}

func (s *csvSource) set(c *chunk, t bind.Target, r int, cell string) error {
	if c.isArray(t) {
		return fillJSON(c, t, r, []byte(cell))
	}
	col, at, err := c.scalar(t, r)
	if err != nil {
		return err
	}
	return col.Text(at, cell)
}

func (s *csvSource) skip(n int) (int, error) {
	for k := range n {
		if _, err := s.r.Read(); err != nil {
			if errors.Is(err, io.EOF) {
				return k, nil
			}
			return k, fmt.Errorf("reading the input: %w", err)
		}
		s.row++
	}
	return n, nil
}

func (s *csvSource) position() (float64, int64) {
	if s.size == 0 {
		return 1, -1
	}
	return float64(s.r.InputOffset()) / float64(s.size), -1
}

func (s *csvSource) Close() error { return s.f.Close() }
