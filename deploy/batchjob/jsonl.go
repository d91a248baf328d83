package batchjob

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/model"
)

// jsonlSource reads JSON Lines: one object per line, keys naming columns.
// The first object's keys are the file's columns; every later line must
// hold the ones the model takes.
type jsonlSource struct {
	f     *os.File
	size  int64
	r     *bufio.Reader
	count *countingReader
	line  int64 // lines read so far, for errors
	keys  []string
	first []byte // the first object's line, read ahead for its keys
	b     *binding
	slots []jsonlSlot
	// fields is reused for every line's decoded object.
	fields map[string]json.RawMessage
}

func openJSONL(path string) (*jsonlSource, error) {
	f, size, err := openSized(path)
	if err != nil {
		return nil, err
	}
	cr := &countingReader{r: f}
	s := &jsonlSource{f: f, size: size, count: cr, r: bufio.NewReaderSize(cr, readBuffer(size))}
	line, err := s.next()
	if errors.Is(err, io.EOF) {
		f.Close()
		return nil, fmt.Errorf("%s has no rows: nothing to predict", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	if s.keys, err = objectKeys(line); err != nil {
		f.Close()
		return nil, fmt.Errorf("%s line %d: %w", path, s.line, err)
	}
	s.first = append([]byte(nil), line...)
	return s, nil
}

// next returns the next line that is not blank.
func (s *jsonlSource) next() ([]byte, error) {
	for {
		line, err := s.r.ReadSlice('\n')
		if errors.Is(err, bufio.ErrBufferFull) {
			long := append([]byte(nil), line...)
			for errors.Is(err, bufio.ErrBufferFull) {
				line, err = s.r.ReadSlice('\n')
				long = append(long, line...)
			}
			line = long
		}
		if err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("reading the input: %w", err)
		}
		if len(line) > 0 {
			s.line++
		}
		if t := bytes.TrimSpace(line); len(t) > 0 {
			return t, nil
		}
		if err != nil {
			return nil, io.EOF
		}
	}
}

// objectKeys lists a JSON object's keys in order.
func objectKeys(line []byte) ([]string, error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, fmt.Errorf("each line must be a JSON object")
	}
	var keys []string
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, fmt.Errorf("reading the object: %w", err)
		}
		keys = append(keys, tok.(string))
		var skip json.RawMessage
		if err := dec.Decode(&skip); err != nil {
			return nil, fmt.Errorf("reading the object: %w", err)
		}
	}
	return keys, nil
}

func (s *jsonlSource) columns() []string { return s.keys }

type jsonlSlot struct {
	key string
	t   bind.Target
}

func (s *jsonlSource) bind(b *binding) error {
	s.b = b
	for _, k := range s.keys {
		if t, ok := b.targets[k]; ok {
			s.slots = append(s.slots, jsonlSlot{key: k, t: t})
		}
	}
	return nil
}

// nextObject is the next row's line: the first, read ahead for its keys,
// then the rest.
func (s *jsonlSource) nextObject() ([]byte, error) {
	if s.first != nil {
		line := s.first
		s.first = nil
		return line, nil
	}
	return s.next()
}

func (s *jsonlSource) read(c *chunk) error {
	for !c.full() {
		line, err := s.nextObject()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return err
		}
		r := c.rows
		clear(s.fields)
		if depth, at := model.Nesting(line, model.MaxNesting); depth > model.MaxNesting {
			return c.rowErr(r, "", fmt.Errorf("line %d nests arrays and objects more than %d levels deep (at byte %d)", s.line, model.MaxNesting, at))
		}
		if err := json.Unmarshal(line, &s.fields); err != nil {
			return c.rowErr(r, "", fmt.Errorf("line %d is not a JSON object: %w", s.line, err))
		}
		if s.b.id != "" {
			c.ids = append(c.ids, idFromJSON(s.fields[s.b.id]))
		}
		for _, sl := range s.slots {
			raw, ok := s.fields[sl.key]
			if !ok {
				return c.rowErr(r, sl.key, fmt.Errorf("line %d has no %q key", s.line, sl.key))
			}
			if err := fillJSON(c, sl.t, r, raw); err != nil {
				return c.rowErr(r, sl.key, err)
			}
		}
		c.rows++
	}
	if c.rows == 0 {
		return io.EOF
	}
	return nil
}

func (s *jsonlSource) skip(n int) (int, error) {
	for k := range n {
		if _, err := s.nextObject(); err != nil {
			if errors.Is(err, io.EOF) {
				return k, nil
			}
			return k, err
		}
	}
	return n, nil
}

func (s *jsonlSource) position() (float64, int64) {
	if s.size == 0 {
		return 1, -1
	}
	done := s.count.n - int64(s.r.Buffered())
	return float64(done) / float64(s.size), -1
}

func (s *jsonlSource) Close() error { return s.f.Close() }
