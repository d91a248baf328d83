package server

import (
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

// TestScannerFloat_matchesStrconvToTheBit checks the fast path against
// strconv, which rounds correctly, at 32 and 64 bits.
func TestScannerFloat_matchesStrconvToTheBit(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	var cases []string
	for range 20000 {
		f32 := math.Float32frombits(rng.Uint32())
		if !math.IsNaN(float64(f32)) && !math.IsInf(float64(f32), 0) {
			cases = append(cases, strconv.FormatFloat(float64(f32), 'g', -1, 32))
		}
		f64 := math.Float64frombits(rng.Uint64())
		if !math.IsNaN(f64) && !math.IsInf(f64, 0) {
			cases = append(cases, strconv.FormatFloat(f64, 'g', -1, 64))
		}
		// Short decimals, as tabular data mostly is.
		cases = append(cases, strconv.FormatFloat(rng.Float64()*2000-1000, 'f', rng.IntN(9), 64))
		// Long mantissas beyond the fast path.
		cases = append(cases, strconv.FormatFloat(rng.NormFloat64(), 'f', 18+rng.IntN(6), 64))
	}
	cases = append(cases, "0", "-0", "1", "-1", "0.0", "5.0", "1e3", "1E-3", "123456789012345678901234",
		"0.000000000000000000000001", "9007199254740993", "3.4028235e38", "1.17549435e-38", "2.5", "-0.1",
		"0.30000000000000004", "1.00000005960464477539062499", "1.000000059604644775390625")
	for _, c := range cases {
		for _, bits := range []int{32, 64} {
			want, werr := strconv.ParseFloat(c, bits)
			// Alone, a number ends the buffer (the general path reads
			// it); followed by more of a row, the quick path does.
			for _, tail := range []string{"", ",", "]}", ", 0.5, 0.25]"} {
				s := scanner{b: []byte(c + tail)}
				got, err := s.float(bits)
				if (err != nil) != (werr != nil) {
					t.Fatalf("%q at %d bits: error %v, strconv %v", c+tail, bits, err, werr)
				}
				if werr == nil && math.Float64bits(got) != math.Float64bits(want) {
					t.Fatalf("%q at %d bits = %v, strconv says %v", c+tail, bits, got, want)
				}
				if werr == nil && s.i != len(c) {
					t.Fatalf("%q: stopped at %d", c+tail, s.i)
				}
			}
		}
	}
}

// TestQuickFloat_readsTheCommonForms: the numbers a table of floats holds
// take the quick path (so it cannot quietly stop being used), the rest
// are left to the general one.
func TestQuickFloat_readsTheCommonForms(t *testing.T) {
	const tail = ",0.5,0.25]}"
	for _, c := range []string{"0", "-0", "7", "0.5", "-0.12345678", "0.123456789", "1234567.5", "-0.000012345678",
		"3.5e-05", "1.25E+10", "2e3", "0.1234567890123456", "-12.75e-7"} {
		for _, bits := range []int{32, 64} {
			f, next, ok := quickFloat([]byte(c+tail), 0, bits)
			want, _ := strconv.ParseFloat(c, bits)
			if !ok || next != len(c) || math.Float64bits(f) != math.Float64bits(want) {
				t.Errorf("%s at %d bits: quick path %v, %v, ending at %d; want %v", c, bits, ok, f, next, want)
			}
		}
	}
	for _, c := range []string{"", "-", "01", "-01.5", "1.", "1.e5", ".5", "1e", "1e+", "1e1234", "12345678.5", "0.12345678901234567",
		"1.5.5", "1e5e5", "1-2", "9007199254740993", "1e23", "0.5x", "-x", "1.0000000596046447753906250"} {
		if f, _, ok := quickFloat([]byte(c+tail), 0, 32); ok && (c == "0.5x" && f != 0.5) {
			t.Errorf("%s read as %v", c, f)
		} else if ok && c != "0.5x" {
			t.Errorf("%s: quick path read %v; it belongs to the general one", c, f)
		}
	}
}

func TestScannerCountFast(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{`[]`, 0},
		{`[ ]`, 0},
		{`[1]`, 1},
		{`[1, 2, 3]`, 3},
		{`[[1, 2], {"a": [3, 4]}, "x,y]", "q\"]"]`, 4},
		{`[[]]`, 1},
		{`[{}]`, 1},
	}
	for _, tt := range tests {
		s := scanner{b: []byte(tt.in)}
		if got, ok := s.countFast(); !ok || got != tt.want {
			t.Errorf("countFast(%s) = %d, %v; want %d", tt.in, got, ok, tt.want)
		}
	}
}

func TestScannerStr_unescapes(t *testing.T) {
	tests := map[string]string{
		`"plain"`:                 "plain",
		`"a\"b\\c\/d"`:            `a"b\c/d`,
		`"\n\t\r\b\f"`:            "\n\t\r\b\f",
		`"\u00e9\u65e5"`:          "é日",
		`"\ud83d\ude00"`:          "😀",
		`"lone \ud83d surrogate"`: "lone \uFFFD surrogate",
	}
	for in, want := range tests {
		s := scanner{b: []byte(in)}
		got, err := s.str()
		if err != nil || string(got) != want {
			t.Errorf("str(%s) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, bad := range []string{`"unterminated`, "\"ctl\x01\"", `"\x"`, `"\u12"`} {
		s := scanner{b: []byte(bad)}
		if _, err := s.str(); err == nil {
			t.Errorf("str(%q) accepted bad input", bad)
		}
	}
}

func TestScannerSkip_boundsDepthWithoutRecursion(t *testing.T) {
	nest := func(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
	objs := func(n int) string { return strings.Repeat(`{"a":`, n) + "1" + strings.Repeat("}", n) }
	tests := []struct {
		name    string
		in      string
		wantErr string
	}{
		{"flat values", `[1, "a", true, null, {"k": [2, {}]}, []]`, ""},
		{"arrays at the limit", nest(maxDepth), ""},
		{"objects at the limit", objs(maxDepth), ""},
		{"arrays past the limit", nest(maxDepth + 1), "more than 64 levels deep (at byte 64)"},
		{"objects past the limit", objs(maxDepth + 1), "more than 64 levels deep (at byte 320)"},
		{"thirty million levels", nest(30_000_000), "more than 64 levels deep"},
		{"mixed, unclosed", `[{"a": [1, {"b": ]}]`, "not valid JSON"},
		{"object without colon", `{"a" 1}`, "not valid JSON"},
		{"array closed by brace", `[1, 2}`, "not valid JSON"},
		{"cut short", `[[1, [2`, "not valid JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := scanner{b: []byte(tt.in)}
			err := s.skip()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("skip: %v", err)
			case tt.wantErr == "" && s.i != len(tt.in):
				t.Fatalf("skip stopped at byte %d of %d", s.i, len(tt.in))
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("skip = %v, want an error with %q", err, tt.wantErr)
			}
		})
	}
}

// TestScannerFloat_eightDigitsAtATime: fractions read eight digits at a
// time round exactly as strconv does, at both widths, wherever the run of
// eight starts and ends, and a non-digit inside a run ends the number.
func TestScannerFloat_eightDigitsAtATime(t *testing.T) {
	for _, s := range []string{
		"0.12345678", "0.123456789", "-0.54321987", "0.00000001", "-0.000000012345678", "12345678.12345678",
		"0.1234567890123456", "0.12345678901234567890", "1.00000005960464477539062499", "9999999999.99999999",
		"0.99999999", "3.14159265e2", "0.30000000000000004", "0.1234567", "5.00000000",
	} {
		for _, bits := range []int{32, 64} {
			sc := scanner{b: []byte(s + ",")}
			got, err := sc.float(bits)
			want, _ := strconv.ParseFloat(s, bits)
			if err != nil || math.Float64bits(got) != math.Float64bits(want) || sc.i != len(s) {
				t.Errorf("%s at %d bits = %v (%v), ending at %d; strconv says %v", s, bits, got, err, sc.i, want)
			}
		}
	}
	for _, s := range []string{"0.12345678.", "0.12345678e", "0.123456789.5"} {
		sc := scanner{b: []byte(s)}
		if got, err := sc.float(64); err == nil {
			t.Errorf("%s read as %v", s, got)
		}
	}
	// A letter inside a run of eight ends the number before it; what
	// follows is the caller's to refuse.
	sc := scanner{b: []byte("0.1234a678")}
	if got, err := sc.float(64); err != nil || got != 0.1234 || sc.i != 6 {
		t.Errorf("0.1234a678 = %v (%v), ending at %d", got, err, sc.i)
	}
}

// BenchmarkScannerFloat reads a row of float32s as a table sends them.
func BenchmarkScannerFloat(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	var row []byte
	for j := range 64 {
		if j > 0 {
			row = append(row, ',')
		}
		row = strconv.AppendFloat(row, float64(rng.Float32()*2-1), 'g', -1, 32)
	}
	row = append(row, "]}"...)
	b.SetBytes(int64(len(row)))
	for b.Loop() {
		s := scanner{b: row}
		for j := range 64 {
			if j > 0 {
				s.i++
			}
			if _, err := s.float(32); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkScannerFloats reads a row of 64 float32s in one loop.
func BenchmarkScannerFloats(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	row := []byte("[0")
	for range 64 {
		row = append(row, ',')
		row = strconv.AppendFloat(row, float64(rng.Float32()*2-1), 'g', -1, 32)
	}
	row = append(row, "],[1,0.5,0.25]]}"...)
	dst := make([]float32, 64)
	b.SetBytes(int64(len(row)))
	for b.Loop() {
		s := scanner{b: row, i: 3}
		if n := s.floats(dst); n != 64 {
			b.Fatalf("read %d at %d: %.20s", n, s.i, row[s.i:])
		}
	}
}

func TestWithin(t *testing.T) {
	b := []byte(`{"a": "\u0062"}`)
	s := scanner{b: b, i: 1}
	plain, _ := s.str()
	s.i = 6
	escaped, _ := s.str()
	if !within(b, plain) || within(b, escaped) || within(b, []byte("a")) || !within(b, b[3:3]) {
		t.Fatalf("within: plain %v, escaped %v", within(b, plain), within(b, escaped))
	}
}
