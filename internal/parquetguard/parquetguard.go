// Package parquetguard checks a Parquet file's structure before parquet-go
// reads it: predict-batch's inputs and the inference log replay reads.
package parquetguard

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"

	"github.com/modelserve/modelserve/model"
)

// A Parquet file's footer and page headers are Thrift structs, which may
// nest without end; parquet-go decodes them by recursion, and sizes its
// buffers from what the headers claim. Check reads them first,
// without recursion and with bounds, so that a hostile file is refused
// with a reason rather than ending the process.
const (
	maxFooterBytes     = 64 << 20
	maxPageHeaderBytes = 16 << 20
	// maxPageBytes bounds a page's uncompressed size and maxPageValues its
	// values: parquet-go holds a page whole (writers make pages of about a
	// megabyte).
	maxPageBytes  = 256 << 20
	maxPageValues = 1 << 24
)

// Check validates the structure of the Parquet file r of size
// bytes: magic, footer, schema depth, and every page header of every
// column chunk.
func Check(r io.ReaderAt, size int64) error {
	if size < 12 {
		return errors.New("too short to be a Parquet file")
	}
	var tail [8]byte
	if _, err := r.ReadAt(tail[:], size-8); err != nil {
		return fmt.Errorf("reading the footer: %w", err)
	}
	switch string(tail[4:]) {
	case "PAR1":
	case "PARE":
		return errors.New("the file is encrypted; modelserve reads plain Parquet files")
	default:
		return errors.New("no Parquet magic number at the end")
	}
	footerLen := int64(binary.LittleEndian.Uint32(tail[:4]))
	if footerLen > size-12 || footerLen > maxFooterBytes {
		return fmt.Errorf("the footer claims %d bytes in a file of %d (at most %d accepted)", footerLen, size, int64(maxFooterBytes))
	}
	footer := make([]byte, footerLen)
	if _, err := r.ReadAt(footer, size-8-footerLen); err != nil {
		return fmt.Errorf("reading the footer: %w", err)
	}
	if _, err := walkThrift(bufio.NewReader(bytes.NewReader(footer)), footerLen, nil); err != nil {
		return fmt.Errorf("the footer: %w", err)
	}
	var meta format.FileMetaData
	if err := thrift.Unmarshal(&thrift.CompactProtocol{}, footer, &meta); err != nil {
		return fmt.Errorf("the footer: %w", err)
	}
	if err := checkSchema(meta.Schema); err != nil {
		return err
	}
	data := size - 8 - footerLen
	for g, rg := range meta.RowGroups {
		for c, cc := range rg.Columns {
			if err := checkPages(r, data, &cc.MetaData); err != nil {
				return fmt.Errorf("row group %d, column %d: %w", g, c, err)
			}
		}
	}
	return nil
}

// checkSchema follows the flattened schema's child counts without
// recursion: each must be consistent, and the tree at most
// model.MaxNesting deep.
func checkSchema(schema []format.SchemaElement) error {
	if len(schema) == 0 {
		return errors.New("the schema is empty")
	}
	// left holds, per open group, the children still to come.
	left := []int64{}
	for i, el := range schema {
		if len(left) > 0 {
			left[len(left)-1]--
		}
		if children, _ := el.NumChildren.Get(); children > 0 {
			n := int64(children)
			if n > int64(len(schema)-i-1) {
				return fmt.Errorf("schema element %q claims %d children; only %d elements follow", el.Name, n, len(schema)-i-1)
			}
			if len(left) >= model.MaxNesting {
				return fmt.Errorf("the schema nests groups more than %d levels deep (at %q)", model.MaxNesting, el.Name)
			}
			left = append(left, n)
		} else if i == 0 {
			return errors.New("the schema's root has no columns")
		}
		for len(left) > 0 && left[len(left)-1] == 0 {
			left = left[:len(left)-1]
		}
		if len(left) == 0 && i < len(schema)-1 {
			return fmt.Errorf("schema element %d lies outside the root", i+1)
		}
	}
	if len(left) > 0 {
		return errors.New("the schema ends inside a group")
	}
	return nil
}

// checkPages walks a column chunk's page headers.
func checkPages(r io.ReaderAt, dataEnd int64, cm *format.ColumnMetaData) error {
	start := cm.DataPageOffset
	if cm.DictionaryPageOffset > 0 && cm.DictionaryPageOffset < start {
		start = cm.DictionaryPageOffset
	}
	end := start + cm.TotalCompressedSize
	if start < 4 || cm.TotalCompressedSize < 0 || end > dataEnd || end < start {
		return fmt.Errorf("its pages (bytes %d to %d) lie outside the file's data (4 to %d)", start, end, dataEnd)
	}
	br := bufio.NewReaderSize(io.NewSectionReader(r, start, end-start), int(min(end-start, 64<<10)))
	for pos := start; pos < end; {
		var uncompressed, compressed, values int64 = -1, -1, 0
		n, err := walkThrift(br, min(end-pos, maxPageHeaderBytes), func(path []int16, v int64) {
			switch {
			case len(path) == 1 && path[0] == 2:
				uncompressed = v
			case len(path) == 1 && path[0] == 3:
				compressed = v
			case len(path) == 2 && path[1] == 1 && (path[0] == 5 || path[0] == 7 || path[0] == 8):
				values = v
			}
		})
		if err != nil {
			return fmt.Errorf("the page header at byte %d: %w", pos, err)
		}
		switch {
		case compressed < 0 || uncompressed < 0:
			return fmt.Errorf("the page header at byte %d has no valid sizes", pos)
		case uncompressed > maxPageBytes:
			return fmt.Errorf("the page at byte %d claims %d bytes uncompressed; at most %d are accepted", pos, uncompressed, int64(maxPageBytes))
		case values < 0 || values > maxPageValues:
			return fmt.Errorf("the page at byte %d claims %d values; at most %d are accepted", pos, values, maxPageValues)
		case compressed > end-pos-n:
			return fmt.Errorf("the page at byte %d claims %d bytes; the column chunk has %d left", pos, compressed, end-pos-n)
		}
		if _, err := br.Discard(int(compressed)); err != nil {
			return fmt.Errorf("the page at byte %d: %w", pos, err)
		}
		pos += n + compressed
	}
	return nil
}

// Thrift compact protocol types.
const (
	tBoolTrue  = 1
	tBoolFalse = 2
	tByte      = 3
	tI16       = 4
	tI32       = 5
	tI64       = 6
	tDouble    = 7
	tBinary    = 8
	tList      = 9
	tSet       = 10
	tMap       = 11
	tStruct    = 12
	tUUID      = 13
)

// thriftFrame is an open struct or container.
type thriftFrame struct {
	container bool
	// A container's element types (a map alternates key and value) and
	// how many items are left; a struct's last field id.
	types  [2]byte
	left   int64
	isMap  bool
	lastID int16
}

// walkThrift reads one compact-protocol struct of at most limit bytes,
// without recursion and at most model.MaxNesting levels deep, and returns
// its length. ints, if given, receives every integer field of a struct
// (not of a container) with its path of field ids.
func walkThrift(r *bufio.Reader, limit int64, ints func(path []int16, v int64)) (int64, error) {
	t := &thriftReader{r: r, limit: limit}
	stack := []thriftFrame{{}}
	path := []int16{}
	for len(stack) > 0 {
		f := &stack[len(stack)-1]
		var typ byte
		if f.container {
			if f.left == 0 {
				stack = stack[:len(stack)-1]
				continue
			}
			typ = f.types[0]
			if f.isMap && f.left%2 == 1 {
				typ = f.types[1]
			}
			f.left--
			if typ == tBoolTrue || typ == tBoolFalse {
				if _, err := t.byte(); err != nil {
					return t.n, err
				}
				continue
			}
		} else {
			h, err := t.byte()
			if err != nil {
				return t.n, err
			}
			if h == 0 { // STOP
				stack = stack[:len(stack)-1]
				if len(path) > 0 && len(stack) > 0 && !stack[len(stack)-1].container {
					path = path[:len(path)-1]
				}
				continue
			}
			typ = h & 0x0f
			if delta := int16(h >> 4); delta != 0 {
				f.lastID += delta
			} else {
				id, err := t.varint()
				if err != nil {
					return t.n, err
				}
				f.lastID = int16(zigzag(id))
			}
		}
		inStruct := !f.container
		id := f.lastID
		switch typ {
		case tBoolTrue, tBoolFalse:
		case tByte:
			if _, err := t.byte(); err != nil {
				return t.n, err
			}
		case tI16, tI32, tI64:
			v, err := t.varint()
			if err != nil {
				return t.n, err
			}
			if inStruct && ints != nil && !inContainer(stack) {
				ints(append(path, id), zigzag(v))
			}
		case tDouble:
			if err := t.skip(8); err != nil {
				return t.n, err
			}
		case tUUID:
			if err := t.skip(16); err != nil {
				return t.n, err
			}
		case tBinary:
			n, err := t.varint()
			if err != nil {
				return t.n, err
			}
			if err := t.skip(int64(n)); err != nil {
				return t.n, err
			}
		case tList, tSet, tMap, tStruct:
			if len(stack) >= model.MaxNesting {
				return t.n, fmt.Errorf("structs and lists nest more than %d levels deep (at byte %d)", model.MaxNesting, t.n)
			}
			next := thriftFrame{}
			switch typ {
			case tStruct:
				if inStruct {
					path = append(path, id)
				}
			case tMap:
				size, err := t.varint()
				if err != nil {
					return t.n, err
				}
				next.container, next.isMap, next.left = true, true, 2*int64(size)
				if size > 0 {
					kv, err := t.byte()
					if err != nil {
						return t.n, err
					}
					next.types = [2]byte{kv >> 4, kv & 0x0f}
				}
			default:
				h, err := t.byte()
				if err != nil {
					return t.n, err
				}
				size := int64(h >> 4)
				if size == 15 {
					u, err := t.varint()
					if err != nil {
						return t.n, err
					}
					size = int64(u)
				}
				next.container, next.left, next.types = true, size, [2]byte{h & 0x0f, h & 0x0f}
			}
			// Every item takes a byte at least.
			if next.left < 0 || next.left > t.limit-t.n {
				return t.n, fmt.Errorf("a container claims %d items in %d bytes (at byte %d)", next.left, t.limit-t.n, t.n)
			}
			stack = append(stack, next)
		default:
			return t.n, fmt.Errorf("unknown Thrift type %d at byte %d", typ, t.n)
		}
	}
	return t.n, nil
}

// inContainer reports whether any open frame is a list, set or map: the
// integers inside them are not struct fields with a path.
func inContainer(stack []thriftFrame) bool {
	for _, f := range stack {
		if f.container {
			return true
		}
	}
	return false
}

func zigzag(u uint64) int64 { return int64(u>>1) ^ -int64(u&1) }

// thriftReader counts what it reads and stops at its limit.
type thriftReader struct {
	r        *bufio.Reader
	n, limit int64
}

var errThriftEnd = errors.New("the struct runs past its end")

func (t *thriftReader) byte() (byte, error) {
	if t.n >= t.limit {
		return 0, errThriftEnd
	}
	b, err := t.r.ReadByte()
	if err != nil {
		return 0, errThriftEnd
	}
	t.n++
	return b, nil
}

func (t *thriftReader) varint() (uint64, error) {
	var u uint64
	for shift := 0; shift < 70; shift += 7 {
		b, err := t.byte()
		if err != nil {
			return 0, err
		}
		u |= uint64(b&0x7f) << shift
		if b < 0x80 {
			return u, nil
		}
	}
	return 0, fmt.Errorf("a varint longer than 10 bytes at byte %d", t.n)
}

func (t *thriftReader) skip(n int64) error {
	if n < 0 || n > t.limit-t.n {
		return errThriftEnd
	}
	if _, err := t.r.Discard(int(n)); err != nil {
		return errThriftEnd
	}
	t.n += n
	return nil
}
