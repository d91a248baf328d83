package replay

import (
	"encoding/json"
	"math"
	"testing"
)

func TestCompare(t *testing.T) {
	tests := []struct {
		a, b    string
		maxAbs  float64
		flipped bool
		argmax  bool
	}{
		{"1", "2", 1, true, false},
		{`"setosa"`, `"virginica"`, 0, true, false},
		{"[0.1,0.9]", "[0.2,0.8]", 0.1, false, true},
		{"[0.6,0.4]", "[0.4,0.6]", 0.2, true, true},
		{"[1,2]", "[1,2,3]", math.Inf(1), true, true},
		{"[null,1]", "[0,1]", math.NaN(), true, true}, // a NaN where a number was counts as a flip
	}
	for _, tt := range tests {
		d := compare(json.RawMessage(tt.a), json.RawMessage(tt.b))
		if d.flipped != tt.flipped || d.argmax != tt.argmax || math.Abs(d.maxAbs-tt.maxAbs) > 1e-9 && !(math.IsNaN(tt.maxAbs) || math.IsInf(tt.maxAbs, 1) && math.IsInf(d.maxAbs, 1)) {
			t.Errorf("compare(%s, %s) = %+v, want %v %v %v", tt.a, tt.b, d, tt.maxAbs, tt.flipped, tt.argmax)
		}
	}
}

// FuzzTensorOf: any output a server answers is read into a tensor of its
// shape or refused, never a panic.
func FuzzTensorOf(f *testing.F) {
	f.Add("FP32", "[2,2]", "[1,2.5,null,-3]")
	f.Add("INT64", "[3]", "[1,-2,9223372036854775807]")
	f.Add("UINT8", "[1]", "[300]")
	f.Add("BYTES", "[2]", `["a","b"]`)
	f.Add("BOOL", "[1]", "[true]")
	f.Add("FP16", "[1]", "[1e9]")
	f.Fuzz(func(t *testing.T, dt, shape, data string) {
		var s []int64
		if json.Unmarshal([]byte(shape), &s) != nil {
			return
		}
		tensor, err := tensorOf(oipOutput{Name: "x", Datatype: dt, Shape: s, Data: json.RawMessage(data)})
		if err == nil && tensor.Shape.Elements() != tensor.Rows()*tensor.RowElements() {
			t.Fatalf("a tensor of shape %v", tensor.Shape)
		}
	})
}
