package server

import (
	"errors"
	"math"
	"math/rand/v2"
	"reflect"
	"strconv"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/model"
)

func irisSig() model.Signature {
	return model.Signature{
		Inputs:    []model.Spec{{Name: "features", DType: model.Float32, Shape: model.Shape{-1, 4}}},
		Outputs:   []model.Spec{{Name: "label", DType: model.Int64, Shape: model.Shape{-1}}},
		Functions: []model.Function{{Name: "predict", Outputs: []string{"label"}}},
		Features:  map[string][]string{"features": {"sepal_length", "sepal_width", "petal_length", "petal_width"}},
	}
}

func mixedSig() model.Signature {
	return model.Signature{
		Inputs: []model.Spec{
			{Name: "text", DType: model.String, Shape: model.Shape{-1}},
			{Name: "emb", DType: model.Float32, Shape: model.Shape{-1, 3}},
			{Name: "flag", DType: model.Bool, Shape: model.Shape{-1}},
			{Name: "small", DType: model.Int8, Shape: model.Shape{-1}},
			{Name: "pixels", DType: model.Float64, Shape: model.Shape{-1, 2, 2}},
			{Name: "tokens", DType: model.Int64, Shape: model.Shape{-1, -1}},
		},
		Outputs:   []model.Spec{{Name: "y", DType: model.Float32, Shape: model.Shape{-1}}},
		Functions: []model.Function{{Name: "predict", Outputs: []string{"y"}}},
	}
}

func decode(t *testing.T, sig model.Signature, body string) (*batch, error) {
	t.Helper()
	return newDecoder(sig).decode([]byte(body), decodeOptions{})
}

func TestDecode_rowsIntoTensors(t *testing.T) {
	tests := []struct {
		name   string
		sig    model.Signature
		body   string
		rowIDs []int64
		inputs []any
		shapes []model.Shape
	}{
		{"flat scalars", irisSig(), `{"data": [[0, 5.1, 3.5, 1.4, 0.2], [1, 6.7, 3.0, 5.2, 2.3]]}`,
			[]int64{0, 1}, []any{[]float32{5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3}}, []model.Shape{{2, 4}}},
		{"flat vector", irisSig(), `{"data": [[0, [1, 2, 3, 4]]]}`,
			[]int64{0}, []any{[]float32{1, 2, 3, 4}}, []model.Shape{{1, 4}}},
		{"row numbers kept, 0.0 accepted", irisSig(), `{"data": [[7.0, 1, 2, 3, 4], [3, "5", "6", "7", "8"]]}`,
			[]int64{7, 3}, []any{[]float32{1, 2, 3, 4, 5, 6, 7, 8}}, []model.Shape{{2, 4}}},
		{"wide rows, SQL case rules", irisSig(), `{"data": [[0, {"SEPAL_LENGTH": 1, "sepal_width": 2, "Petal_Length": 3, "petal_width": 4}]]}`,
			[]int64{0}, []any{[]float32{1, 2, 3, 4}}, []model.Shape{{1, 4}}},
		{"wide row with the whole input", irisSig(), `{"data": [[0, {"FEATURES": [1, 2, 3, 4]}]]}`,
			[]int64{0}, []any{[]float32{1, 2, 3, 4}}, []model.Shape{{1, 4}}},
		{"every kind of input", mixedSig(),
			`{"data": [[0, "a", [1, 2, 3], true, -128, [[1, 2], [3, 4]], [1, 2, 3]],
			           [1, "é\"", 4, 5, 6, false, 127.0, [5, 6, 7, 8], [4, 5, 6]]]}`,
			[]int64{0, 1},
			[]any{[]string{"a", "é\""}, []float32{1, 2, 3, 4, 5, 6}, []bool{true, false}, []int8{-128, 127},
				[]float64{1, 2, 3, 4, 5, 6, 7, 8}, []int64{1, 2, 3, 4, 5, 6}},
			[]model.Shape{{2}, {2, 3}, {2}, {2}, {2, 2, 2}, {2, 3}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := decode(t, tt.sig, tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(b.rowIDs, tt.rowIDs) {
				t.Errorf("row ids = %v, want %v", b.rowIDs, tt.rowIDs)
			}
			for i, in := range b.inputs {
				if !reflect.DeepEqual(in.Data, tt.inputs[i]) || !reflect.DeepEqual(in.Shape, tt.shapes[i]) {
					t.Errorf("input %d = %v %v, want %v %v", i, in.Shape, in.Data, tt.shapes[i], tt.inputs[i])
				}
			}
		})
	}
}

func TestDecode_wideRowEchoesID(t *testing.T) {
	b, err := decode(t, irisSig(), `{"data": [[0, {"features": [1,2,3,4], "_ID": {"k": [1, "x"]}}], [1, [1,2,3,4]]]}`)
	if err != nil {
		t.Fatal(err)
	}
	if string(b.echo[0]) != `{"k": [1, "x"]}` || b.echo[1] != nil {
		t.Errorf("echo = %q", b.echo)
	}
}

func TestDecode_errorsNameRowAndColumn(t *testing.T) {
	tests := []struct {
		name   string
		sig    model.Signature
		body   string
		row    int64
		column string
		msg    string
	}{
		{"not json", irisSig(), `{"data": [`, -1, "", "not valid JSON"},
		{"no data", irisSig(), `{"rows": []}`, -1, "", `no "data" key`},
		{"data not an array", irisSig(), `{"data": {}}`, -1, "", `"data" must be an array`},
		{"empty batch", irisSig(), `{"data": []}`, -1, "", "holds no rows"},
		{"row not an array", irisSig(), `{"data": [5]}`, 0, "", "each row must be an array"},
		{"row number a string", irisSig(), `{"data": [["0", 1, 2, 3, 4]]}`, 0, "", "row number"},
		{"row number fractional", irisSig(), `{"data": [[0.5, 1, 2, 3, 4]]}`, 0, "", "whole number"},
		{"too few arguments", irisSig(), `{"data": [[0, 1, 2, 3, 4], [1, 1, 2, 3]]}`, 1, "", "expected 4 arguments (sepal_length FLOAT"},
		{"too many arguments", irisSig(), `{"data": [[0, 1, 2, 3, 4, 5]]}`, 0, "", "or 1 argument (features ARRAY), got 5"},
		{"string for a float", irisSig(), `{"data": [[0, 1, 2, 3, 4], [1, 1, 2, "x", 4]]}`, 1, "petal_length", `expected FLOAT (float32), got string "x"`},
		{"null for a float", irisSig(), `{"data": [[0, 1, null, 3, 4]]}`, 0, "sepal_width", "got null"},
		{"bool for a float", irisSig(), `{"data": [[0, 1, 2, 3, true]]}`, 0, "petal_width", "got boolean true"},
		{"unknown column", irisSig(), `{"data": [[0, {"sepal_length": 1, "bogus": 2}]]}`, 0, "bogus", "unknown column"},
		{"missing column", irisSig(), `{"data": [[0, {"sepal_length": 1, "sepal_width": 2, "petal_length": 3}]]}`, 0, "petal_width", "missing column"},
		{"column given twice", irisSig(), `{"data": [[0, {"sepal_length": 1, "SEPAL_LENGTH": 2}]]}`, 0, "SEPAL_LENGTH", "given twice"},
		{"whole and features", irisSig(), `{"data": [[0, {"features": [1,2,3,4], "sepal_length": 1}]]}`, 0, "features", "given both"},
		{"short vector", irisSig(), `{"data": [[0, [1, 2, 3]]]}`, 0, "features", "an array of shape [3] where [4] belongs"},
		{"number for a string", mixedSig(), `{"data": [[0, 5, [1,2,3], true, 1, [1,2,3,4], [1]]]}`, 0, "text", "expected VARCHAR (string), got number 5"},
		{"number for a bool", mixedSig(), `{"data": [[0, "a", [1,2,3], 1, 1, [1,2,3,4], [1]]]}`, 0, "flag", "expected BOOLEAN"},
		{"int8 out of range", mixedSig(), `{"data": [[0, "a", [1,2,3], true, 300, [1,2,3,4], [1]]]}`, 0, "small", "300 is out of range for NUMBER (int8)"},
		{"fractional int", mixedSig(), `{"data": [[0, "a", [1,2,3], true, 1.5, [1,2,3,4], [1]]]}`, 0, "small", "whole number"},
		{"scalar for a tensor", mixedSig(), `{"data": [[0, "a", [1,2,3], true, 1, 7, [1]]]}`, 0, "pixels", "expected an array of shape [2, 2]"},
		{"ragged sequence", mixedSig(), `{"data": [[0, "a", [1,2,3], true, 1, [1,2,3,4], [1, 2]], [1, "a", [1,2,3], true, 1, [1,2,3,4], [1, 2, 3]]]}`, 1, "tokens", "3 elements where 2 belong"},
		{"bad nesting", mixedSig(), `{"data": [[0, "a", [1,2,3], true, 1, [[1,2],[3]], [1]]]}`, 0, "pixels", "1 elements where 2 belong"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode(t, tt.sig, tt.body)
			var in *bind.Error
			if !errors.As(err, &in) {
				t.Fatalf("decode() = %v, want a bind.Error", err)
			}
			if in.Row != tt.row || in.Column != tt.column || !strings.Contains(in.Err.Error(), tt.msg) {
				t.Errorf("error = row %d column %q %q\nwant    row %d column %q containing %q", in.Row, in.Column, in.Err.Error(), tt.row, tt.column, tt.msg)
			}
		})
	}
}

func BenchmarkDecode_irisBatch64(b *testing.B) {
	var sb strings.Builder
	sb.WriteString(`{"data": [`)
	for r := range 64 {
		if r > 0 {
			sb.WriteByte(',')
		}
		sb.WriteString(`[` + string(rune('0'+r%10)) + `, 5.1, 3.5, 1.4, 0.2]`)
	}
	sb.WriteString(`]}`)
	body := []byte(sb.String())
	d := newDecoder(irisSig())
	b.SetBytes(int64(len(body)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.decode(body, decodeOptions{}); err != nil {
			b.Fatal(err)
		}
	}
}

// rowsBody is rows rows of width float features as the gateway sends
// them: flat, or wide, one object each keyed f0..f<width-1>.
func rowsBody(rows, width int, wide bool) []byte {
	rng := rand.New(rand.NewPCG(1, 2))
	b := []byte(`{"data":[`)
	for r := range rows {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(r), 10)
		if wide {
			b = append(b, ",{"...)
		}
		for j := range width {
			if j > 0 || !wide {
				b = append(b, ',')
			}
			if wide {
				b = append(b, `"f`...)
				b = strconv.AppendInt(b, int64(j), 10)
				b = append(b, `":`...)
			}
			b = strconv.AppendFloat(b, float64(rng.Float32()*2-1), 'g', -1, 32)
		}
		if wide {
			b = append(b, '}')
		}
		b = append(b, ']')
	}
	return append(b, "]}"...)
}

// BenchmarkDecode_4096x64 decodes 4096 rows of 64 FP32 features, flat
// and wide (b.SetBytes: MB/s of JSON on one core).
func BenchmarkDecode_4096x64(b *testing.B) {
	names := make([]string, 64)
	for j := range names {
		names[j] = "f" + strconv.Itoa(j)
	}
	sig := model.Signature{
		Inputs:    []model.Spec{{Name: "x", DType: model.Float32, Shape: model.Shape{-1, 64}}},
		Outputs:   []model.Spec{{Name: "y", DType: model.Float32, Shape: model.Shape{-1, 8}}},
		Functions: []model.Function{{Name: "predict", Outputs: []string{"y"}}},
		Features:  map[string][]string{"x": names},
	}
	for _, wide := range []bool{false, true} {
		body := rowsBody(4096, 64, wide)
		b.Run(map[bool]string{false: "flat", true: "wide"}[wide], func(b *testing.B) {
			d := newDecoder(sig)
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := d.decode(body, decodeOptions{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(4096*b.N)/b.Elapsed().Seconds(), "rows/s")
		})
	}
}

func TestDecode_dataframeShapes(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		rowIDs []int64
		data   []float32
	}{
		{"split with index, columns in any order",
			`{"dataframe_split": {"index": [7, 3], "columns": ["petal_width", "SEPAL_LENGTH", "sepal_width", "petal_length"],
			  "data": [[0.2, 5.1, 3.5, 1.4], [2.3, 6.7, 3.0, 5.2]]}}`,
			[]int64{7, 3}, []float32{5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3}},
		{"split without index, data first, the whole input as one column",
			`{"dataframe_split": {"data": [[[1, 2, 3, 4]], [[5, 6, 7, 8]]], "columns": ["features"]}}`,
			[]int64{0, 1}, []float32{1, 2, 3, 4, 5, 6, 7, 8}},
		{"records",
			`{"dataframe_records": [{"sepal_length": 1, "sepal_width": 2, "petal_length": 3, "petal_width": 4}, {"features": [5, 6, 7, 8]}]}`,
			[]int64{0, 1}, []float32{1, 2, 3, 4, 5, 6, 7, 8}},
		{"empty params, and keys the server does not know",
			`{"params": {}, "data": [[0, 1, 2, 3, 4]], "client": "x"}`,
			[]int64{0}, []float32{1, 2, 3, 4}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b, err := decode(t, irisSig(), tt.body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(b.rowIDs, tt.rowIDs) || !reflect.DeepEqual(b.inputs[0].Data, tt.data) {
				t.Errorf("rows %v data %v, want %v %v", b.rowIDs, b.inputs[0].Data, tt.rowIDs, tt.data)
			}
		})
	}
}

func TestDecode_dataframeAndBodyErrors(t *testing.T) {
	tests := []struct {
		name   string
		body   string
		row    int64
		column string
		msg    string
	}{
		{"two shapes", `{"data": [[0, 1, 2, 3, 4]], "dataframe_records": []}`, -1, "", `both "data" and "dataframe_records"`},
		{"params for a model without", `{"data": [[0, 1, 2, 3, 4]], "params": {"temperature": 0.5}}`, -1, "", "takes no parameters, got temperature"},
		{"params not an object", `{"data": [[0, 1, 2, 3, 4]], "params": 3}`, -1, "", `"params" must be an object`},
		{"split unknown column", `{"dataframe_split": {"columns": ["sepal_length", "petal"], "data": [[1, 2]]}}`, -1, "petal", "unknown column"},
		{"split missing column", `{"dataframe_split": {"columns": ["sepal_length", "sepal_width", "petal_length"], "data": [[1, 2, 3]]}}`, -1, "", "the input has no column for petal_width; the model takes 4 arguments"},
		{"split index mismatch", `{"dataframe_split": {"index": [1], "columns": ["features"], "data": [[[1,2,3,4]], [[1,2,3,4]]]}}`, -1, "", `"index" holds 1 entries for 2 rows`},
		{"split row too long", `{"dataframe_split": {"index": [5], "columns": ["features"], "data": [[[1,2,3,4], 9]]}}`, 5, "", "more values than the 1 columns"},
		{"split without data", `{"dataframe_split": {"columns": ["features"]}}`, -1, "", `needs "columns" and "data"`},
		{"record not an object", `{"dataframe_records": [[1, 2]]}`, 0, "", "must be an object"},
		{"records empty", `{"dataframe_records": []}`, -1, "", "holds no rows"},
		{"trailing garbage", `{"data": [[0, 1, 2, 3, 4]]} x`, -1, "", "not valid JSON"},
		{"not an object", `[1, 2]`, -1, "", "must be a JSON object"},
		{"cut short in a row", `{"data": [[0, 1, 2`, 0, "", "not valid JSON"},
		// Found by FuzzDecodeRow and FuzzDecodeSplit: JSON has no leading zeros.
		{"a number with a leading zero", `{"data": [[0, 00, 0, 0, 0]]}`, 0, "sepal_length", "expected FLOAT (float32): the body is not valid JSON: a malformed number at byte 14"},
		{"a leading zero in a vector", `{"dataframe_split": {"columns": ["features"], "data": [[[0, 00, 0, 0]]]}}`, -1, "", "a malformed number at byte 60"},
		{"a leading zero in a skipped value", `{"x": 01, "data": [[0, 1, 2, 3, 4]]}`, -1, "", "a malformed number at byte 6"},
		{"a point without digits", `{"data": [[0, 1., 2, 3, 4]]}`, 0, "sepal_length", "a malformed number"},
		{"an exponent without digits", `{"data": [[0, 1e+, 2, 3, 4]]}`, 0, "sepal_length", "a malformed number"},
		{"a leading zero in a row number", `{"data": [[01, 1, 2, 3, 4]]}`, 0, "", "a malformed number"},
		{"deep in an unknown key", `{"x": ` + nested(maxDepth+1) + `, "data": [[0, 1, 2, 3, 4]]}`, -1, "", "more than 64 levels deep (at byte 70)"},
		{"deep in params", `{"data": [[0, 1, 2, 3, 4]], "params": {"a": ` + nested(maxDepth+1) + `}}`, -1, "", "more than 64 levels deep"},
		{"deep in a wide row", `{"data": [[0, 1, 2, 3, 4], [1, {"sepal_length": ` + nested(maxDepth+1) + `}]]}`, 1, "", "more than 64 levels deep"},
		{"deep in a record", `{"dataframe_records": [{"features": ` + nested(maxDepth+1) + `}]}`, -1, "", "more than 64 levels deep"},
		{"deep in split data", `{"dataframe_split": {"columns": ["features"], "data": [[` + nested(maxDepth+1) + `]]}}`, -1, "", "more than 64 levels deep"},
		{"deep in a vector", `{"data": [[0, ` + nested(maxDepth+1) + `]]}`, 0, "features", "an array of shape [1] where [4] belongs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := decode(t, irisSig(), tt.body)
			var in *bind.Error
			if !errors.As(err, &in) {
				t.Fatalf("decode() = %v, want a bind.Error", err)
			}
			if in.Row != tt.row || in.Column != tt.column || !strings.Contains(in.Err.Error(), tt.msg) {
				t.Errorf("error = row %d column %q %q\nwant    row %d column %q containing %q", in.Row, in.Column, in.Err.Error(), tt.row, tt.column, tt.msg)
			}
		})
	}
}

func TestDecode_nullIsNaNOnlyWhereAllowed(t *testing.T) {
	body := []byte(`{"data": [[0, 1, null, 3, 4]]}`)
	d := newDecoder(irisSig())
	b, err := d.decode(body, decodeOptions{nullAsNaN: true})
	if err != nil {
		t.Fatal(err)
	}
	if v := b.inputs[0].Data.([]float32)[1]; !math.IsNaN(float64(v)) {
		t.Errorf("null became %v, want NaN", v)
	}
	_, err = d.decode(body, decodeOptions{})
	var in *bind.Error
	if !errors.As(err, &in) || in.Column != "sepal_width" || !strings.Contains(in.Err.Error(), "--null-as-nan") {
		t.Errorf("null without permission = %v", err)
	}
	// Only floats have a NaN.
	ints := mixedSig()
	if _, err := newDecoder(ints).decode([]byte(`{"data": [[0, "a", [1,2,3], true, null, [1,2,3,4], [1]]]}`), decodeOptions{nullAsNaN: true}); err == nil {
		t.Error("null for an int8 was accepted")
	}
}

func TestDecode_quotedNamesMatchExactly(t *testing.T) {
	sig := model.Signature{
		Inputs: []model.Spec{
			{Name: "Petal Width", DType: model.Float32, Shape: model.Shape{-1}},
			{Name: "petalLength", DType: model.Float32, Shape: model.Shape{-1}},
		},
		Outputs:   []model.Spec{{Name: "y", DType: model.Float32, Shape: model.Shape{-1}}},
		Functions: []model.Function{{Name: "predict", Outputs: []string{"y"}}},
	}
	tests := []struct {
		body string
		ok   bool
	}{
		{`{"data": [[0, {"Petal Width": 1, "PETALLENGTH": 2}]]}`, true},
		{`{"data": [[0, {"Petal Width": 1, "petallength": 2}]]}`, true},
		{`{"data": [[0, {"PETAL WIDTH": 1, "petalLength": 2}]]}`, false},
	}
	for _, tt := range tests {
		_, err := decode(t, sig, tt.body)
		if (err == nil) != tt.ok {
			t.Errorf("%s: %v", tt.body, err)
		}
	}
}

// nested is n arrays, each inside the last.
func nested(n int) string { return strings.Repeat("[", n) + strings.Repeat("]", n) }
