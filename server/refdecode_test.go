package server

import (
	"bytes"
	"encoding/json"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/bind"
)

// The reference decoder: the gateway's rows for the iris signature (one
// FP32 input of four named features) read the plain way, with
// encoding/json for the structure and strconv for the numbers, and the
// same rules as the fast decoder (bind's names, the value rules, which
// mistake is reported first). FuzzDecodeAgainstReference requires the two
// to agree on every body: the same tensors bit for bit, or a refusal
// naming the same row and column.

// refResult is what the reference makes of a body: row numbers and the
// features row-major, or a refusal (row, column).
type refResult struct {
	ids    []int64
	x      []float32
	failed bool
	row    int64
	column string
}

func refFail(row int64, column string) refResult {
	return refResult{failed: true, row: row, column: column}
}

// refDecode reads {"data": [row, ...]} for irisSig.
func refDecode(body []byte, nullAsNaN bool) (refResult, bool) {
	var top struct{ Data []json.RawMessage }
	if json.Unmarshal(body, &top) != nil {
		return refResult{}, false // not JSON: only refusal is compared
	}
	return refEach(top.Data, func(r int, raw json.RawMessage, names *bind.Names, feats []string, row []float32) (int64, *refResult) {
		elems, ok := refArray(raw)
		if !ok || len(elems) == 0 {
			f := refFail(int64(r), "")
			return 0, &f
		}
		id, ok := refRowNumber(elems[0])
		if !ok {
			f := refFail(int64(r), "")
			return 0, &f
		}
		if keys, values, isObject := refObject(elems[min(1, len(elems)-1)]); len(elems) == 2 && isObject {
			return id, refWide(keys, values, names, feats, id, row, nullAsNaN)
		}
		return id, refFlat(elems[1:], feats, id, row, nullAsNaN)
	}), true
}

// refRecords reads {"dataframe_records": [object, ...]} for irisSig:
// each record a wide row numbered by its place.
func refRecords(body []byte, nullAsNaN bool) (refResult, bool) {
	var top struct {
		Records []json.RawMessage `json:"dataframe_records"`
	}
	if json.Unmarshal(body, &top) != nil {
		return refResult{}, false
	}
	return refEach(top.Records, func(r int, raw json.RawMessage, names *bind.Names, feats []string, row []float32) (int64, *refResult) {
		keys, values, ok := refObject(raw)
		if !ok {
			f := refFail(int64(r), "")
			return 0, &f
		}
		return int64(r), refWide(keys, values, names, feats, int64(r), row, nullAsNaN)
	}), true
}

// refEach reads every element with read, which fills one row's features
// and returns its number, or the refusal that ends the body.
func refEach(elems []json.RawMessage, read func(r int, raw json.RawMessage, names *bind.Names, feats []string, row []float32) (int64, *refResult)) refResult {
	if len(elems) == 0 {
		return refFail(-1, "")
	}
	sig := irisSig()
	names := bind.NewNames(sig)
	feats := sig.FeatureNames(0)
	var res refResult
	for r, raw := range elems {
		row := make([]float32, len(feats))
		id, fail := read(r, raw, names, feats, row)
		if fail != nil {
			return *fail
		}
		res.ids = append(res.ids, id)
		res.x = append(res.x, row...)
	}
	return res
}

// refFlat reads a row's positional arguments: the four features as
// scalars, or one array of them.
func refFlat(args []json.RawMessage, feats []string, id int64, row []float32, nan bool) *refResult {
	if len(args) > 0 {
		if whole, ok := refArray(args[0]); ok {
			if f := refWhole(whole, id, row, nan); f != nil {
				return f
			}
			if len(args) != 1 {
				f := refFail(id, "")
				return &f
			}
			return nil
		}
	}
	for j := range min(len(args), len(feats)) {
		v, ok := refValue(args[j], nan)
		if !ok {
			f := refFail(id, feats[j])
			return &f
		}
		row[j] = v
	}
	if len(args) != len(feats) {
		f := refFail(id, "")
		return &f
	}
	return nil
}

// refWhole reads the input whole: an array of exactly its four values.
func refWhole(whole []json.RawMessage, id int64, row []float32, nan bool) *refResult {
	if len(whole) != len(row) {
		f := refFail(id, "features")
		return &f
	}
	for j, raw := range whole {
		v, ok := refValue(raw, nan)
		if !ok {
			f := refFail(id, "features")
			return &f
		}
		row[j] = v
	}
	return nil
}

// refWide reads a row's object: keys looked up in their order (an unknown
// or repeated one refused as met), then the values in the signature's
// order.
func refWide(keys []string, values []json.RawMessage, names *bind.Names, feats []string, id int64, row []float32, nan bool) *refResult {
	whole := -1
	at := make([]int, len(feats))
	for j := range at {
		at[j] = -1
	}
	var scratch []byte
	for k, key := range keys {
		if key == "_ID" {
			continue
		}
		t, ok := names.LookupBytes([]byte(key), &scratch)
		if !ok {
			f := refFail(id, key)
			return &f
		}
		pos := &whole
		if !t.Whole() {
			pos = &at[t.Feature]
		}
		if *pos >= 0 {
			f := refFail(id, key)
			return &f
		}
		*pos = k
	}
	given, missing := 0, -1
	for j, k := range at {
		if k >= 0 {
			given++
		} else if missing < 0 {
			missing = j
		}
	}
	switch {
	case whole >= 0 && given > 0:
		f := refFail(id, "features")
		return &f
	case whole >= 0:
		arr, ok := refArray(values[whole])
		if !ok {
			f := refFail(id, "features")
			return &f
		}
		return refWhole(arr, id, row, nan)
	case missing >= 0:
		f := refFail(id, feats[missing])
		return &f
	}
	for j, k := range at {
		v, ok := refValue(values[k], nan)
		if !ok {
			f := refFail(id, feats[j])
			return &f
		}
		row[j] = v
	}
	return nil
}

// refValue is one FP32 value: a number, a string holding one, or null
// where it reads as NaN.
func refValue(raw json.RawMessage, nan bool) (float32, bool) {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return 0, false
	}
	var text string
	switch x := v.(type) {
	case json.Number:
		text = string(x)
	case string:
		text = strings.TrimSpace(x)
	case nil:
		return float32(math.NaN()), nan
	default:
		return 0, false
	}
	f, err := strconv.ParseFloat(text, 32)
	return float32(f), err == nil
}

// refRowNumber is element 0: a whole number (5, or 5.0).
func refRowNumber(raw json.RawMessage) (int64, bool) {
	var v any
	d := json.NewDecoder(bytes.NewReader(raw))
	d.UseNumber()
	if d.Decode(&v) != nil {
		return 0, false
	}
	n, ok := v.(json.Number)
	if !ok {
		return 0, false
	}
	if i, err := strconv.ParseInt(string(n), 10, 64); err == nil {
		return i, true
	}
	f, err := strconv.ParseFloat(string(n), 64)
	if err != nil || f != float64(int64(f)) || f < -(1<<63) || f >= 1<<63 {
		return 0, false
	}
	return int64(f), true
}

// refArray is raw's elements if it is an array.
func refArray(raw json.RawMessage) ([]json.RawMessage, bool) {
	if t := bytes.TrimSpace(raw); len(t) == 0 || t[0] != '[' {
		return nil, false
	}
	var elems []json.RawMessage
	return elems, json.Unmarshal(raw, &elems) == nil
}

// refObject is raw's keys and values in order, repeats kept, if it is an
// object.
func refObject(raw json.RawMessage) (keys []string, values []json.RawMessage, ok bool) {
	d := json.NewDecoder(bytes.NewReader(raw))
	if tok, err := d.Token(); err != nil || tok != json.Delim('{') {
		return nil, nil, false
	}
	for d.More() {
		tok, err := d.Token()
		if err != nil {
			return nil, nil, false
		}
		var v json.RawMessage
		if err := d.Decode(&v); err != nil {
			return nil, nil, false
		}
		keys, values = append(keys, tok.(string)), append(values, v)
	}
	return keys, values, true
}

// asJSONReads is a name as encoding/json reads it: each byte that is not
// UTF-8 the replacement character (the decoder keeps a key's bytes as
// sent).
func asJSONReads(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r) // ranging over a string yields utf8.RuneError for each invalid byte
	}
	return b.String()
}

// FuzzDecodeAgainstReference feeds the same rows to the decoder and to the
// reference: both refuse, naming the same row and column, or both give the
// same row numbers and the same float32 bits.
func FuzzDecodeAgainstReference(f *testing.F) {
	for _, s := range []string{
		`[0, 5.1, 3.5, 1.4, 0.2], [1, "6.7", " 3 ", 5.2, 2.3]`,
		`[0, [5.1, 3.5, 1.4, 0.2]], [1.0, [1, 2, 3]]`,
		`[0, {"sepal_length": 1, "SEPAL_WIDTH": 2, "petal_length": 3, "petal_width": 4, "_ID": "x"}], [1, {"sepal_length": 1, "sepal_width": 2, "petal_length": 3, "petal_width": 4}]`,
		`[0, {"features": [1, 2, 3, 4]}], [1, {"sepal_length": 1, "sepal_length": 2}]`,
		`[0, 1, 2, null, 4], [2, 1e39, 0, 0, 0], [3, true, 0, 0, 0], [4, 1, 2, 3], [5, 1, 2, 3, 4, 5]`,
		`[0, {"sepal_length": 1, "sepal_width": 2, "petal_length": 3, "petal_width": 4}], [1, {"sepal_length": 1, "sepal_width": 2, "petal_length": 3}], [2, {"x": 1}]`,
		`[0, 0.12345678901234567, -0.000000012345678, 12345678.12345678, 1]`,
	} {
		f.Add([]byte(s))
	}
	d := newDecoder(irisSig())
	f.Fuzz(func(t *testing.T, rows []byte) {
		// The same elements as the gateway's rows and as dataframe
		// records; each read in order, and in parallel parts of a few
		// bytes.
		for _, shape := range []struct {
			key string
			ref func([]byte, bool) (refResult, bool)
		}{{"data", refDecode}, {"dataframe_records", refRecords}} {
			body := append(append([]byte(`{"`+shape.key+`": [`), rows...), "]}"...)
			for _, opts := range []decodeOptions{{parts: 1}, {nullAsNaN: true, parts: 1}, {parts: 3, partBytes: 8}, {nullAsNaN: true, parts: 3, partBytes: 8}} {
				b, err := d.decode(body, opts)
				want, valid := shape.ref(body, opts.nullAsNaN)
				checkAgainstReference(t, body, b, err, want, valid)
			}
		}
	})
}

// checkAgainstReference compares the decoder's batch or error with the
// reference's reading of the same body.
func checkAgainstReference(t *testing.T, body []byte, b *batch, err error, want refResult, valid bool) {
	t.Helper()
	if !valid {
		if err == nil {
			t.Fatalf("decoded a body that is not JSON: %q", body)
		}
		return
	}
	var deep *DepthError
	if errors.As(err, &deep) {
		return // nested past the decoder's limit: refused whatever the reference says
	}
	var be *bind.Error
	switch {
	case want.failed && err == nil:
		t.Fatalf("decoded what the reference refuses (row %d, column %q): %q", want.row, want.column, body)
	case !want.failed && err != nil:
		t.Fatalf("refused what the reference reads: %v: %q", err, body)
	case err != nil && !errors.As(err, &be):
		t.Fatalf("refused with %T: %v", err, err)
	case err != nil && (be.Row != want.row || asJSONReads(be.Column) != want.column):
		t.Fatalf("refused at row %d, column %q (%v); the reference at row %d, column %q: %q", be.Row, be.Column, err, want.row, want.column, body)
	case err == nil:
		got := b.inputs[0].Data.([]float32)
		if len(got) != len(want.x) || len(b.rowIDs) != len(want.ids) {
			t.Fatalf("%d values for %d rows; the reference %d for %d: %q", len(got), len(b.rowIDs), len(want.x), len(want.ids), body)
		}
		for i := range got {
			if math.Float32bits(got[i]) != math.Float32bits(want.x[i]) {
				t.Fatalf("value %d = %v; the reference %v: %q", i, got[i], want.x[i], body)
			}
		}
		for i := range b.rowIDs {
			if b.rowIDs[i] != want.ids[i] {
				t.Fatalf("row %d numbered %d; the reference %d", i, b.rowIDs[i], want.ids[i])
			}
		}
	}
}
