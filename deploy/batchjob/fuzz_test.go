package batchjob

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/modelserve/modelserve/model"
)

// The fuzz targets of predict-batch's readers: a file nobody checked, in
// each format, read against a signature with a feature matrix, an open
// vector and a string. Their seeds are in testdata/fuzz.

func fuzzSignature() model.Signature {
	return model.Signature{
		Inputs: []model.Spec{
			{Name: "x", DType: model.Float32, Shape: model.Shape{-1, 3}},
			{Name: "tokens", DType: model.Int64, Shape: model.Shape{-1, -1}},
			{Name: "text", DType: model.String, Shape: model.Shape{-1}},
		},
		Outputs:   []model.Spec{{Name: "y", DType: model.Float32, Shape: model.Shape{-1}}},
		Functions: []model.Function{{Name: "predict", Outputs: []string{"y"}}},
		Features:  map[string][]string{"x": {"a", "b", "c"}},
	}
}

// checkRead reads a file of format f whole, chunk by chunk, with an id
// column or without (by the data's length, so both are explored): it is
// read or refused, never a panic, and every chunk's tensors hold its rows.
func checkRead(t *testing.T, dir string, f Format, data []byte) {
	path := filepath.Join(dir, "in."+f.ext())
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	sig := fuzzSignature()
	for _, id := range []string{[]string{"", "id"}[len(data)%2]} {
		src, _, err := open(path, f, id)
		if err != nil {
			continue
		}
		b, err := newBinding(sig, sig.Functions[0], src.columns(), id)
		if err == nil {
			err = src.bind(b)
		}
		if err != nil {
			src.Close()
			continue
		}
		c := newChunk(b, 16)
		for k := 0; k < 64; k++ {
			c.reset(k, 0)
			if err := src.read(c); err != nil {
				break
			}
			inputs, err := c.tensors()
			if err != nil {
				t.Fatalf("a chunk was read with an input left empty: %v", err)
			}
			for i, x := range inputs {
				if x.Rows() != c.rows {
					t.Fatalf("input %d has %d rows in a chunk of %d", i, x.Rows(), c.rows)
				}
			}
			if id != "" && len(c.ids) != c.rows {
				t.Fatalf("%d ids in a chunk of %d rows", len(c.ids), c.rows)
			}
		}
		src.position()
		src.Close()
	}
}

func FuzzReadCSV(f *testing.F) {
	for _, s := range []string{
		"id,a,b,c,tokens,text\n1,0.5,1,2,\"[1,2,3]\",hello\n2,1e3,-2,3.25,\"[4,5,6]\",\"a, b\"\n",
		"x,tokens,text\n\"[1,2,3]\",\"[7]\",z\n\"[4,5,6]\",\"[8]\",\n",
		"A,B,C,TOKENS,TEXT,extra\n1,2,3,[],x,y\n",
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) { checkRead(t, dir, CSV, data) })
}

func FuzzReadJSONLines(f *testing.F) {
	for _, s := range []string{
		`{"id": 1, "a": 0.5, "b": 1, "c": 2, "tokens": [1, 2, 3], "text": "hello"}` + "\n" + `{"id": "x", "a": "1", "b": null, "c": 3, "tokens": [4, 5, 6], "text": "b"}` + "\n",
		`{"x": [[1, 2, 3]], "tokens": [[7]], "text": "z"}` + "\n\n" + `{"x": [4, 5, 6], "tokens": [8], "text": ""}`,
		`{"x": [1, 2, 3], "tokens": [], "text": "\u00e9", "deep": [[[[]]]]}`,
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) { checkRead(t, dir, JSONLines, data) })
}

type fuzzParquetRow struct {
	ID     int64   `parquet:"id"`
	A      float32 `parquet:"a"`
	B      float64 `parquet:"b,optional"`
	C      int32   `parquet:"c"`
	Tokens []int64 `parquet:"tokens,list"`
	Text   string  `parquet:"text"`
}

func FuzzReadParquet(f *testing.F) {
	for _, rows := range [][]fuzzParquetRow{
		{{ID: 1, A: 0.5, B: 1, C: 2, Tokens: []int64{1, 2, 3}, Text: "hello"}, {ID: 2, A: -1, B: 3, C: 4, Tokens: []int64{4, 5, 6}, Text: ""}},
		{{ID: 7, Tokens: nil, Text: "z"}},
	} {
		var b bytes.Buffer
		if err := parquet.Write(&b, rows); err != nil {
			f.Fatal(err)
		}
		f.Add(b.Bytes())
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, data []byte) { checkRead(t, dir, Parquet, data) })
}
