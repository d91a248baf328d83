package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/valyala/fasthttp"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/bind"
)

// The fuzz targets of what a caller sends: a body in each request shape,
// the numbers in it, the gateway's headers, and compressed bodies. Their
// seeds are in testdata/fuzz; make fuzz runs each for FUZZTIME.

// checkDecode decodes body against signatures with every kind of input,
// with and without nulls as NaN. A body is refused with a bind.Error or
// decoded into tensors of one row per row number; a body that decodes is
// valid JSON.
func checkDecode(t *testing.T, body []byte) {
	for _, d := range fuzzDecoders() {
		for _, nan := range []bool{false, true} {
			b, err := d.decode(body, decodeOptions{nullAsNaN: nan})
			slow, serr := d.decode(body, decodeOptions{nullAsNaN: nan, slowWide: true, parts: 1})
			if fmt.Sprint(err) != fmt.Sprint(serr) {
				t.Fatalf("wide rows in the learned order: %v; each key looked up: %v", err, serr)
			}
			if err == nil && !sameBatch(b, slow) {
				t.Fatalf("wide rows read in the learned order differ from the rows read key by key")
			}
			// The rows after the first cut into parts of a few bytes,
			// read in parallel: the same batch, or the same error.
			par, perr := d.decode(body, decodeOptions{nullAsNaN: nan, parts: 3, partBytes: 8})
			if fmt.Sprint(perr) != fmt.Sprint(serr) {
				t.Fatalf("rows read in parts: %v; in order: %v", perr, serr)
			}
			if perr == nil && !sameBatch(par, slow) {
				t.Fatalf("rows read in parts differ from the rows read in order")
			}
			if err != nil {
				var in *bind.Error
				if !errors.As(err, &in) {
					t.Fatalf("decode failed with %T, not a bind.Error: %v", err, err)
				}
				continue
			}
			if !json.Valid(body) {
				t.Fatalf("decoded a body that is not JSON: %q", body)
			}
			for i, x := range b.inputs {
				if x.Rows() != len(b.rowIDs) {
					t.Fatalf("input %d has %d rows for %d row numbers", i, x.Rows(), len(b.rowIDs))
				}
			}
			if b.echo != nil && len(b.echo) != len(b.rowIDs) {
				t.Fatalf("%d echoed ids for %d rows", len(b.echo), len(b.rowIDs))
			}
		}
	}
}

// sameBatch compares two decoded batches bit for bit.
func sameBatch(a, b *batch) bool {
	if !slices.Equal(a.rowIDs, b.rowIDs) || len(a.inputs) != len(b.inputs) || len(a.echo) != len(b.echo) {
		return false
	}
	for i := range a.echo {
		if !bytes.Equal(a.echo[i], b.echo[i]) {
			return false
		}
	}
	for i := range a.inputs {
		if a.inputs[i].DType != b.inputs[i].DType || !slices.Equal(a.inputs[i].Shape, b.inputs[i].Shape) || !sameData(a.inputs[i], b.inputs[i]) {
			return false
		}
	}
	return true
}

// FuzzDecodeWide takes the object of a wide row between two rows whose
// keys teach the order: read in one pass when it matches, key by key when
// not, and always as the slow path reads it.
func FuzzDecodeWide(f *testing.F) {
	for _, s := range []string{
		`{"features_0": 1, "features_1": 2, "features_2": 3, "features_3": 4}`,
		`{"features_0": 1, "features_1": "2", "features_2": null, "features_3": 4}`,
		`{"features_0": 1, "features_2": 3, "features_1": 2, "features_3": 4}`,
		`{"features_0": 1, "features_1": 2, "features_2": 3}`,
		`{"features_0": 1, "features_1": 2, "features_2": 3, "features_3": 4, "_ID": 9}`,
		`{"features_0":1,"features_1":2,"features_2":3,"features_3":4e400}`,
		`{"TEXT": "b", "emb": [0, 0, 0], "flag": false, "small": 0, "pixels": [1, 2, 3, 4], "tokens": []}`,
	} {
		f.Add([]byte(s))
	}
	iris := `{"features_0": 5.1, "features_1": 3.5, "features_2": 1.4, "features_3": 0.2}`
	mixed := `{"TEXT": "a", "emb": [1, 2, 3], "flag": true, "small": 1, "pixels": [1, 2, 3, 4], "tokens": [1, 2], "_ID": "x"}`
	f.Fuzz(func(t *testing.T, row []byte) {
		for _, first := range []string{iris, mixed} {
			body := []byte(`{"data": [[0, ` + first + `], [1, `)
			body = append(append(body, row...), `], [2, `+first+`]]}`...)
			checkDecode(t, body)
		}
	})
}

var fuzzDecoders = sync.OnceValue(func() []*decoder { return []*decoder{newDecoder(irisSig()), newDecoder(mixedSig())} })

// FuzzDecode takes whole bodies, of any shape.
func FuzzDecode(f *testing.F) {
	for _, s := range []string{
		`{"data": [[0, 5.1, 3.5, 1.4, 0.2], [1, 6.7, 3.0, 5.2, 2.3]]}`,
		`{"data": [[0, {"features_0": 1, "FEATURES_1": 2, "features_2": 3, "features_3": 4, "_ID": "x"}]], "params": {}}`,
		`{"dataframe_split": {"columns": ["features"], "index": [7], "data": [[[1, 2, 3, 4]]]}}`,
		`{"dataframe_records": [{"text": "a", "emb": [1, 2, 3], "flag": true, "small": -3, "pixels": [[1, 2], [3, 4]], "tokens": [1, 2]}]}`,
		`{"x": [[[{"y": null}]]], "data": [[0, "a", [1e3, -0.5, 2E-2], false, 127, [1, 2, 3, 4], [5]]]}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) { checkDecode(t, body) })
}

// FuzzDecodeRow takes the arguments of one row of "data", flat or wide,
// after its row number.
func FuzzDecodeRow(f *testing.F) {
	for _, s := range []string{`5.1, 3.5, 1.4, 0.2`, `[1, 2, 3, 4]`, `{"features": [1, 2, 3, 4]}`, `"5", "6.5", 7, 8e-1`,
		`"a", [1, 2, 3], true, 1, [[1, 2], [3, 4]], [9, 9, 9]`, `{"TEXT": "b", "emb": [0, 0, 0], "flag": false, "small": 0, "pixels": [1, 2, 3, 4], "tokens": []}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, args []byte) {
		checkDecode(t, append(append([]byte(`{"data": [[0, `), args...), "]]}"...))
	})
}

// FuzzDecodeSplit takes the object of "dataframe_split".
func FuzzDecodeSplit(f *testing.F) {
	for _, s := range []string{`{"columns": ["features_0", "features_1", "features_2", "features_3"], "index": [3, 4], "data": [[1, 2, 3, 4], [5, 6, 7, 8]]}`,
		`{"columns": ["features"], "data": [[[1, 2, 3, 4]]]}`, `{"data": [], "columns": []}`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, split []byte) {
		checkDecode(t, append(append([]byte(`{"dataframe_split": `), split...), '}'))
	})
}

// FuzzDecodeRecords takes the array of "dataframe_records".
func FuzzDecodeRecords(f *testing.F) {
	for _, s := range []string{`[{"features": [1, 2, 3, 4]}, {"features_0": 1, "features_1": 2, "features_2": 3, "features_3": 4}]`, `[]`, `[{}]`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, records []byte) {
		checkDecode(t, append(append([]byte(`{"dataframe_records": `), records...), '}'))
	})
}

var jsonNumber = regexp.MustCompile(`^-?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][-+]?[0-9]+)?$`)

// FuzzScannerFloat: every JSON number reads as the same float32 and
// float64 bits as strconv gives, whatever path the scanner takes.
func FuzzScannerFloat(f *testing.F) {
	for _, s := range []string{"0", "-0", "1.5", "3.4028235e38", "1e-400", "123456789012345678901234567890", "0.30000000000000004", "1.00000005960464477539062499"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, b := range []string{s, s + ",1.5,2.5,3.5]}"} {
			checkScannerFloat(t, s, b)
		}
	})
}

// checkScannerFloat reads number s from the start of b (s, or s with
// more of a row after it: the general and the quick path).
func checkScannerFloat(t *testing.T, s, b string) {
	for _, bits := range []int{32, 64} {
		sc := scanner{b: []byte(b)}
		got, err := sc.float(bits)
		if !jsonNumber.MatchString(s) {
			continue // only that it returns
		}
		if err == nil && sc.i != len(s) {
			t.Fatalf("%q at %d bits: stopped at %d", b, bits, sc.i)
		}
		want, werr := strconv.ParseFloat(s, bits)
		if werr != nil {
			if err == nil && !math.IsInf(want, 0) {
				t.Fatalf("%q at %d bits: %v, strconv refuses it (%v)", s, bits, got, werr)
			}
			continue
		}
		if err != nil || math.Float64bits(got) != math.Float64bits(want) {
			t.Fatalf("%q at %d bits = %v (%v), strconv says %v", b, bits, got, err, want)
		}
	}
}

// FuzzReadGateway takes the header lines of a request.
func FuzzReadGateway(f *testing.F) {
	f.Add([]byte("sf-external-function-current-query-id: q1\r\nsf-external-function-query-batch-id: b1\r\nsf-context-current-user: BOB"))
	f.Add([]byte("SF-EXTERNAL-FUNCTION-NAME-BASE64: bXlfZm4=\r\nsf-external-function-name: other\r\nsf-external-function-format: json"))
	f.Add([]byte("sf-context-current-user-base64: !!!\r\nsf-context-x: \r\nX-Other: y"))
	f.Fuzz(func(t *testing.T, lines []byte) {
		var h fasthttp.RequestHeader
		raw := append(append([]byte("POST /predict HTTP/1.1\r\nHost: x\r\n"), lines...), "\r\n\r\n"...)
		if err := h.Read(bufio.NewReader(bytes.NewReader(raw))); err != nil {
			return
		}
		g := readGateway(&h)
		for k := range g.Context {
			if k != strings.ToLower(k) {
				t.Fatalf("context key %q is not lower case", k)
			}
		}
		if g.present() != (g.QueryID != "" || g.BatchID != "" || g.Format != "") {
			t.Fatal("present() disagrees with the ids")
		}
	})
}

// FuzzDecompress takes compressed bodies: however they inflate, no more
// than the limit comes out, and no more than the limit and the answer are
// charged to the budget.
func FuzzDecompress(f *testing.F) {
	f.Add(byte(0), gzipped(f, `{"data": [[0, 1, 2, 3, 4]]}`))
	f.Add(byte(1), deflated(f, `{"data": [[0, 1, 2, 3, 4]]}`))
	f.Add(byte(0), append(gzipped(f, strings.Repeat(" ", 1<<16)), gzipped(f, "x")...))
	f.Add(byte(1), []byte{0x78, 0x9c, 0x03, 0x00})
	f.Fuzz(func(t *testing.T, which byte, raw []byte) {
		const limit = 1 << 20
		enc := []string{"gzip", "deflate", "x-gzip", "identity"}[which%4]
		var charged int64
		out, err := decompress(raw, enc, limit, 256, func(n int64) error {
			if charged += n; charged > 4*limit {
				return admission.ErrTooLarge
			}
			return nil
		})
		if err == nil && len(out) > limit && enc != "identity" {
			t.Fatalf("%s inflated to %d bytes, past the %d limit", enc, len(out), limit)
		}
		if charged > limit+1+int64(len(out)) {
			t.Fatalf("charged %d bytes for an answer of %d (limit %d)", charged, len(out), limit)
		}
	})
}
