package parquetguard

import (
	"bytes"
	"encoding/binary"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go/encoding/thrift"
	"github.com/parquet-go/parquet-go/format"
)

// parquetFile lays out data (after the leading magic) and a footer as a
// Parquet file.
func parquetFile(data, footer []byte) []byte {
	var b bytes.Buffer
	b.WriteString("PAR1")
	b.Write(data)
	b.Write(footer)
	binary.Write(&b, binary.LittleEndian, uint32(len(footer)))
	b.WriteString("PAR1")
	return b.Bytes()
}

func marshal(t *testing.T, v any) []byte {
	t.Helper()
	b, err := thrift.Marshal(&thrift.CompactProtocol{}, v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// nestedStruct is a Thrift struct whose field 1 holds a struct, levels
// deep.
func nestedStruct(levels int) []byte {
	return append(bytes.Repeat([]byte{0x1c}, levels), bytes.Repeat([]byte{0}, levels+1)...)
}

// footerWithPage is a footer whose one column chunk is data at byte 4.
func footerWithPage(t *testing.T, data []byte) []byte {
	t.Helper()
	var leaf format.SchemaElement
	leaf.Name = "x"
	var root format.SchemaElement
	root.Name = "schema"
	root.NumChildren.Set(1)
	cc := format.ColumnChunk{FileOffset: 4, MetaData: format.ColumnMetaData{
		PathInSchema: []string{"x"}, NumValues: 1, DataPageOffset: 4, TotalCompressedSize: int64(len(data))}}
	return marshal(t, &format.FileMetaData{Version: 1, Schema: []format.SchemaElement{root, leaf}, NumRows: 1,
		RowGroups: []format.RowGroup{{Columns: []format.ColumnChunk{cc}, NumRows: 1}}})
}

func pageHeader(t *testing.T, uncompressed, compressed, values int32) []byte {
	t.Helper()
	h := format.PageHeader{Type: format.DataPage, UncompressedPageSize: uncompressed, CompressedPageSize: compressed}
	h.DataPageHeader.Set(format.DataPageHeader{NumValues: values})
	return marshal(t, &h)
}

func TestCheckParquet_refusesHostileStructure(t *testing.T) {
	deepSchema := func(levels int) []byte {
		var els []format.SchemaElement
		for i := range levels {
			var el format.SchemaElement
			el.Name = "g"
			if i < levels-1 {
				el.NumChildren.Set(1)
			}
			els = append(els, el)
		}
		return marshal(t, &format.FileMetaData{Version: 1, Schema: els})
	}
	var lying format.SchemaElement
	lying.Name = "schema"
	lying.NumChildren.Set(5)
	var leaf format.SchemaElement
	leaf.Name = "x"
	okPage := append(pageHeader(t, 4, 4, 1), 1, 2, 3, 4)
	// Type, sizes 4 and 4, then field 100 (written long) holding a struct
	// nested 200 deep, the header's end, and 4 bytes of page.
	deepPage := append([]byte{0x15, 0x00, 0x15, 0x08, 0x15, 0x08, 0x0c, 0xc8, 0x01}, nestedStruct(200)...)
	deepPage = append(deepPage, 0, 1, 2, 3, 4)

	tests := []struct {
		name, want string
		file       []byte
	}{
		{"a sound file", "", parquetFile(okPage, footerWithPage(t, okPage))},
		{"no magic", "no Parquet magic", []byte("PAR1 not a parquet file at all")},
		{"encrypted", "encrypted", []byte("PAR1\x00\x01\x00\x00\x00PARE")},
		{"a footer longer than the file", "the footer claims", append([]byte("PAR1"), 0xff, 0xff, 0xff, 0x0f, 'P', 'A', 'R', '1')},
		{"a footer nested a million deep", "more than 64 levels deep", parquetFile(nil, nestedStruct(1_000_000))},
		{"a list claiming more items than bytes", "claims 2147483647 items", parquetFile(nil, []byte{0x19, 0xfc, 0xff, 0xff, 0xff, 0xff, 0x07, 0})},
		{"a schema nested a thousand deep", "more than 64 levels deep", parquetFile(nil, deepSchema(1000))},
		{"a schema claiming absent children", "claims 5 children", parquetFile(nil, marshal(t, &format.FileMetaData{Version: 1, Schema: []format.SchemaElement{lying, leaf}}))},
		{"a page of a gigabyte", "claims 1073741824 bytes uncompressed", parquetFile(pageHeader(t, 1<<30, 0, 1), footerWithPage(t, pageHeader(t, 1<<30, 0, 1)))},
		{"a page of a billion values", "claims 1000000000 values", parquetFile(pageHeader(t, 4, 0, 1e9), footerWithPage(t, pageHeader(t, 4, 0, 1e9)))},
		{"a page past its chunk", "the column chunk has", parquetFile(pageHeader(t, 4, 100, 1), footerWithPage(t, pageHeader(t, 4, 100, 1)))},
		{"a page header nested deep", "more than 64 levels deep", parquetFile(deepPage, footerWithPage(t, deepPage))},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(bytes.NewReader(tt.file), int64(len(tt.file)))
			switch {
			case tt.want == "" && err != nil:
				t.Fatalf("Check: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("Check = %v, want an error with %q", err, tt.want)
			}
		})
	}
}
