package server

import (
	"bytes"
	"encoding/json"
	"math"
	"strconv"
	"testing"

	"github.com/modelserve/modelserve/model"
)

func TestEncode_oneObjectPerRowInTheCallersOrder(t *testing.T) {
	outs := []model.Tensor{
		{DType: model.Int64, Shape: model.Shape{3}, Data: []int64{2, 0, 1}},
		{DType: model.Float32, Shape: model.Shape{3, 1}, Data: []float32{0.5, float32(math.NaN()), float32(math.Inf(1))}},
		{DType: model.Float64, Shape: model.Shape{3, 2, 2}, Data: []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12.5}},
		{DType: model.String, Shape: model.Shape{3}, Data: []string{"plain", "quote\" back\\ nl\n tab\t ctl\x01", "bad\xffutf8 é"}},
		{DType: model.Bool, Shape: model.Shape{3}, Data: []bool{true, false, true}},
		{DType: model.Uint64, Shape: model.Shape{3}, Data: []uint64{math.MaxUint64, 0, 1}},
	}
	fn := model.Function{Name: "f", Outputs: []string{"s", "label", "grid", "score", "flag", "big"}}
	enc := newEncoder(fn, []string{"label", "score", "grid", "s", "flag", "big"})
	b := &batch{rowIDs: []int64{9, 3, 5}, echo: [][]byte{nil, []byte(`"id-3"`), nil}}
	got := enc.encode(nil, b, outs)

	var parsed struct{ Data [][]json.RawMessage }
	if err := json.Unmarshal(got, &parsed); err != nil {
		t.Fatalf("not JSON: %v\n%s", err, got)
	}
	want := `{"data":[` +
		`[9,{"s":"plain","label":2,"grid":[[1,2],[3,4]],"score":0.5,"flag":true,"big":18446744073709551615}],` +
		`[3,{"s":"quote\" back\\ nl\n tab\t ctl\u0001","label":0,"grid":[[5,6],[7,8]],"score":null,"flag":false,"big":0,"_ID":"id-3"}],` +
		`[5,{"s":"bad\ufffdutf8 é","label":1,"grid":[[9,10],[11,12.5]],"score":null,"flag":true,"big":1}]]}`
	if string(got) != want {
		t.Errorf("encode =\n%s\nwant\n%s", got, want)
	}
}

func TestAppendString_roundTripsThroughEncodingJSON(t *testing.T) {
	for _, s := range []string{"", "a", "日本語", "\u2028", "<>&", "\x00\x1f", "tab\tend"} {
		var back string
		if err := json.Unmarshal(model.AppendJSONString(nil, s), &back); err != nil || back != s {
			t.Errorf("%q came back as %q (%v)", s, back, err)
		}
	}
}

func TestEncode_floatsKeepTheirValue(t *testing.T) {
	vals := []float32{0.1, 1.0 / 3, 1e-30, 3.4028235e38, -2.5}
	out := model.Tensor{DType: model.Float32, Shape: model.Shape{int64(len(vals))}, Data: vals}
	enc := newEncoder(model.Function{Name: "f", Outputs: []string{"x"}}, []string{"x"})
	got := enc.encode(nil, &batch{rowIDs: make([]int64, len(vals))}, []model.Tensor{out})
	var parsed struct{ Data [][]any }
	if err := json.Unmarshal(got, &parsed); err != nil {
		t.Fatal(err)
	}
	if len(parsed.Data) != len(vals) {
		t.Fatalf("rows = %d", len(parsed.Data))
	}
	for i, row := range parsed.Data {
		if f := float32(row[1].(map[string]any)["x"].(float64)); f != vals[i] {
			t.Errorf("row %d: %v came back as %v", i, vals[i], f)
		}
	}
}

// TestEncode_largeAnswersInParts: an answer written in parts on several
// goroutines is byte for byte the answer written in order, whatever the
// number of parts, with echoed ids and outputs of every shape.
func TestEncode_largeAnswersInParts(t *testing.T) {
	const rows = 5000
	labels, scores, grid := make([]int64, rows), make([]float32, rows*3), make([]float64, rows*4)
	b := &batch{rowIDs: make([]int64, rows), echo: make([][]byte, rows)}
	for r := range rows {
		labels[r] = int64(r % 7)
		b.rowIDs[r] = int64(rows - r)
		if r%5 == 0 {
			b.echo[r] = []byte(`"id-` + strconv.Itoa(r) + `"`)
		}
	}
	for i := range scores {
		scores[i] = float32(i) / 7
	}
	for i := range grid {
		grid[i] = float64(i) * 1.5
	}
	outs := []model.Tensor{
		{DType: model.Int64, Shape: model.Shape{rows}, Data: labels},
		{DType: model.Float32, Shape: model.Shape{rows, 3}, Data: scores},
		{DType: model.Float64, Shape: model.Shape{rows, 2, 2}, Data: grid},
	}
	enc := newEncoder(model.Function{Name: "f", Outputs: []string{"grid", "label", "score"}}, []string{"label", "score", "grid"})
	want := enc.encodeIn([]byte("prefix"), b, outs, 1)
	if !json.Valid(want[len("prefix"):]) {
		t.Fatal("the answer in order is not JSON")
	}
	for _, parts := range []int{2, 3, 7, 16} {
		if got := enc.encodeIn([]byte("prefix"), b, outs, parts); !bytes.Equal(got, want) {
			t.Errorf("in %d parts the answer differs from the answer in order", parts)
		}
	}
}
