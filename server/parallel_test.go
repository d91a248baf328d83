package server

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/model"
)

// TestDecode_largeBodiesInParallel: a large body's rows read in parts on
// several goroutines give the batch, or the error, the rows read in order
// give; the parts are used where the cuts fall between rows, and thrown
// away where a cut falls inside one or a part outgrows its room.
func TestDecode_largeBodiesInParallel(t *testing.T) {
	rows := func(n int, row func(r int) string) string {
		var b strings.Builder
		b.WriteString(`{"data": [`)
		for r := range n {
			if r > 0 {
				b.WriteString(",")
			}
			b.WriteString(row(r))
		}
		b.WriteString("]}")
		return b.String()
	}
	flat := func(r int) string {
		return fmt.Sprintf("[%d, %d.%03d, %d, 0.%d, -%d.5]", r, r%7, r%1000, r%3, r%97, r%5)
	}
	wide := func(r int) string {
		return fmt.Sprintf(`[%d, {"sepal_length": %d.25, "sepal_width": 1e-%d, "petal_length": %d, "petal_width": 0.5, "_ID": "id-%d"}]`, r, r%9, r%30, r, r)
	}
	tests := []struct {
		name     string
		sig      model.Signature
		body     string
		parallel bool // read in parts, not thrown away
		wantErr  string
	}{
		{name: "flat", sig: irisSig(), body: rows(3000, flat), parallel: true},
		{name: "wide with _ID", sig: irisSig(), body: rows(3000, wide), parallel: true},
		{name: "flat and wide mixed", sig: irisSig(), body: rows(3000, func(r int) string {
			if r%3 == 1 {
				return wide(r)
			}
			return flat(r)
		}), parallel: true},
		{name: "white space and new lines between rows", sig: irisSig(), body: strings.ReplaceAll(rows(3000, flat), "],[", "] ,\n\t[ "), parallel: true},
		{name: "long first row, short rows after: parts outgrow their room", sig: irisSig(), body: rows(6000, func(r int) string {
			if r == 0 {
				return "[0, 1.00000000000000000000000001, 2.00000000000000000000000002, 3.0000000000000000000000003, 4.0000000000000000000000004]"
			}
			return fmt.Sprintf("[%d,1,2,3,4]", r)
		})},
		{name: "a mistake late in the body", sig: irisSig(), body: rows(3000, func(r int) string {
			if r == 2900 {
				return `[2900, 1, 2, "x", 4]`
			}
			return flat(r)
		}), wantErr: `row 2900, column "petal_length"`},
		{name: "a row too short in the middle", sig: irisSig(), body: rows(3000, func(r int) string {
			if r == 1500 {
				return `[1500, 1, 2, 3]`
			}
			return flat(r)
		}), wantErr: "row 1500"},
		{name: "not JSON in the middle", sig: irisSig(), body: strings.Replace(rows(3000, flat), "[1500,", "[1500,,", 1), wantErr: "row 1500"},
		{name: "nested arrays: every cut inside a row", sig: mixedSig(), body: rows(800, func(r int) string {
			return fmt.Sprintf(`[%d, "t%d", [1, 2, 3], true, %d, [[1, 2], [3, 4]], [%d, 5]]`, r, r, r%100, r)
		})},
		{name: "strings that look like rows", sig: mixedSig(), body: rows(800, func(r int) string {
			return fmt.Sprintf(`[%d, "a],[%d, \"x\"],[b", [1, 2, 3], false, 1, [1, 2, 3, 4], [%d]]`, r, r, r)
		})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if len(tt.body) < 4*partBytes/8 {
				t.Fatalf("the body is %d bytes; too small to cut", len(tt.body))
			}
			d := newDecoder(tt.sig)
			want, werr := d.decode([]byte(tt.body), decodeOptions{parts: 1})
			got, err := d.decode([]byte(tt.body), decodeOptions{parts: 4, partBytes: partBytes / 8})
			if fmt.Sprint(err) != fmt.Sprint(werr) {
				t.Fatalf("in parts: %v; in order: %v", err, werr)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one naming %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !sameBatch(got, want) {
				t.Fatal("the batch read in parts differs from the batch read in order")
			}
			if tt.parallel != (got.parts > 1) {
				t.Fatalf("read in %d parts; parallel %v expected", got.parts, tt.parallel)
			}
			if want.parts != 0 {
				t.Fatalf("parts: 1 read in %d parts", want.parts)
			}
		})
	}
}

func TestRowCut(t *testing.T) {
	tests := []struct {
		in   string
		at   int
		want int
	}{
		{`[[0,1],[1,2]]`, 1, 7},
		{`[[0,1] , [1,2]]`, 1, 9},
		{`[[0,1],[1,2]]`, 7, -1},  // a cut needs the ],[ after at
		{`[[0,"],["],[1]]`, 1, 7}, // a guess: the caller checks it
		{`[[0,1]]`, 0, -1},
		{``, 0, -1},
	}
	for _, tt := range tests {
		if got := rowCut([]byte(tt.in), tt.at); got != tt.want {
			t.Errorf("rowCut(%s, %d) = %d, want %d", tt.in, tt.at, got, tt.want)
		}
	}
}

// BenchmarkDecode_inParts: one 4096-row body on 1, 2 and 4 goroutines.
func BenchmarkDecode_inParts(b *testing.B) {
	sig := model.Signature{Inputs: []model.Spec{{Name: "x", DType: model.Float32, Shape: model.Shape{-1, 64}}}}
	body := rowsBody(4096, 64, false)
	for _, parts := range []int{1, 2, 4} {
		b.Run(strconv.Itoa(parts), func(b *testing.B) {
			d := newDecoder(sig)
			b.SetBytes(int64(len(body)))
			for b.Loop() {
				if _, err := d.decode(body, decodeOptions{parts: parts}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestDecode_pooledTensorsAreWrittenWhole: a batch decoded into memory a
// larger batch gave back (its values still there) equals the same body
// decoded into fresh memory, in order and in parts.
func TestDecode_pooledTensorsAreWrittenWhole(t *testing.T) {
	body := func(rows, salt int) []byte {
		var b strings.Builder
		b.WriteString(`{"data": [`)
		for r := range rows {
			if r > 0 {
				b.WriteString(",")
			}
			if r%5 == 1 {
				fmt.Fprintf(&b, `[%d, {"sepal_length": %d, "sepal_width": 0.%d, "petal_length": 1, "petal_width": 2}]`, r, r+salt, salt)
			} else {
				fmt.Fprintf(&b, "[%d, %d.5, 0.%d, %d, -1]", r, salt, r, r%9)
			}
		}
		b.WriteString("]}")
		return []byte(b.String())
	}
	d := newDecoder(irisSig())
	reused := false
	for try := range 20 {
		big, err := d.decode(body(6000, 7), decodeOptions{})
		if err != nil {
			t.Fatal(err)
		}
		first := &big.inputs[0].Data.([]float32)[0]
		d.release(big)
		opts := decodeOptions{parts: 1 + try%3, partBytes: 4 << 10}
		got, err := d.decode(body(4100, 3), opts)
		if err != nil {
			t.Fatal(err)
		}
		want, err := newDecoder(irisSig()).decode(body(4100, 3), opts)
		if err != nil {
			t.Fatal(err)
		}
		if !sameBatch(got, want) {
			t.Fatalf("try %d: a batch in pooled memory differs from the same batch in fresh memory", try)
		}
		reused = reused || &got.inputs[0].Data.([]float32)[0] == first
		d.release(got)
	}
	if !reused {
		t.Fatal("no batch was decoded into the memory the one before gave back")
	}
}

// TestDecode_keysLearnedWithEscapesKeepTheirText: a first row's keys
// unescaped into the scanner's buffer (which the next escaped string
// overwrites) are learned as copies: the next row's keys still name the
// columns they name, and a key given twice is still refused.
func TestDecode_keysLearnedWithEscapesKeepTheirText(t *testing.T) {
	first := `[0, {"\u0073epal_width": 2, "\u0070etal_width": 4, "sepal_length": 1, "petal_length": 3}]`
	body := []byte(`{"data": [` + first + `, [1, {"sepal_width": 6, "petal_width": 8, "sepal_length": 5, "petal_length": 7}]]}`)
	checkDecode(t, body)
	b, err := newDecoder(irisSig()).decode(body, decodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := b.inputs[0].Data.([]float32); !slices.Equal(got, []float32{1, 2, 3, 4, 5, 6, 7, 8}) {
		t.Fatalf("features = %v", got)
	}
	// Had the first key been learned as the buffer's later text
	// ("petal_width"), this row would read as two different columns.
	twice := []byte(`{"data": [` + first + `, [1, {"petal_width": 6, "petal_width": 8, "sepal_length": 5, "petal_length": 7}]]}`)
	checkDecode(t, twice)
	if _, err := newDecoder(irisSig()).decode(twice, decodeOptions{}); err == nil || !strings.Contains(err.Error(), "given twice") {
		t.Fatalf("a key given twice: %v", err)
	}
}

// TestDecode_recordsInTheLearnedOrder: dataframe records after the first
// are read against the first one's key order, and read as they are read
// key by key whether they match it or not.
func TestDecode_recordsInTheLearnedOrder(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"dataframe_records": [`)
	for r := range 60 {
		if r > 0 {
			b.WriteString(",")
		}
		switch r % 6 {
		case 3: // another order
			fmt.Fprintf(&b, `{"petal_width": %d, "sepal_length": 1, "sepal_width": 2, "petal_length": 3}`, r)
		case 4: // a string value, an _ID
			fmt.Fprintf(&b, `{"sepal_length": "1", "sepal_width": 2, "petal_length": 3, "petal_width": %d, "_ID": "r%d"}`, r, r)
		default:
			fmt.Fprintf(&b, `{"sepal_length": 1, "sepal_width": 2, "petal_length": 3, "petal_width": %d}`, r)
		}
	}
	b.WriteString("]}")
	body := []byte(b.String())
	checkDecode(t, body)
	got, err := newDecoder(irisSig()).decode(body, decodeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	x := got.inputs[0].Data.([]float32)
	for r := range 60 {
		if !slices.Equal(x[r*4:r*4+4], []float32{1, 2, 3, float32(r)}) || got.rowIDs[r] != int64(r) {
			t.Fatalf("record %d = %v (row %d)", r, x[r*4:r*4+4], got.rowIDs[r])
		}
	}
	if string(got.echo[4]) != `"r4"` || got.echo[5] != nil {
		t.Fatalf("echoes = %q", got.echo[:6])
	}
}
