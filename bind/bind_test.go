package bind

import (
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/model"
)

func irisSig() model.Signature {
	return model.Signature{
		Inputs:    []model.Spec{{Name: "features", DType: model.Float32, Shape: model.Shape{-1, 4}}},
		Outputs:   []model.Spec{{Name: "label", DType: model.Int64, Shape: model.Shape{-1}}},
		Functions: []model.Function{{Name: "predict", Outputs: []string{"label"}}},
		Features:  map[string][]string{"features": {"sepal_length", "sepal_width", "petal_length", "petal width"}},
	}
}

func TestNames_lookUpAsSQLDoes(t *testing.T) {
	n := NewNames(irisSig())
	tests := []struct {
		name string
		want Target
		ok   bool
	}{
		{"sepal_length", Target{0, 0}, true},
		{"SEPAL_WIDTH", Target{0, 1}, true}, // an identifier: any case
		{"petal width", Target{0, 3}, true}, // quoted in SQL: exactly
		{"PETAL WIDTH", Target{}, false},
		{"features", Target{0, -1}, true}, // the matrix whole
		{"Features", Target{0, -1}, true},
		{"petal", Target{}, false},
	}
	var scratch []byte
	for _, tt := range tests {
		got, ok := n.Lookup(tt.name)
		gotB, okB := n.LookupBytes([]byte(tt.name), &scratch)
		if ok != tt.ok || ok && got != tt.want || got != gotB || ok != okB {
			t.Errorf("Lookup(%q) = %v %v, LookupBytes %v %v; want %v %v", tt.name, got, ok, gotB, okB, tt.want, tt.ok)
		}
	}
	if got := n.Usage(); got != `4 arguments (sepal_length FLOAT, sepal_width FLOAT, petal_length FLOAT, petal width FLOAT) or 1 argument (features ARRAY)` {
		t.Errorf("usage %s", got)
	}
}

func TestNames_bindColumns(t *testing.T) {
	n := NewNames(irisSig())
	tests := []struct {
		columns []string
		ignored []string
		err     string
	}{
		{[]string{"sepal_length", "SEPAL_WIDTH", "petal_length", "petal width", "note"}, []string{"note"}, ""},
		{[]string{"features", "id"}, []string{"id"}, ""},
		{[]string{"sepal_length", "sepal_width", "petal_length"}, nil, "no column for petal width; the model takes 4 arguments"},
		{[]string{"x"}, nil, "no column for sepal_length, sepal_width, petal_length, petal width (or features)"},
		{[]string{"sepal_length", "SEPAL_LENGTH"}, nil, `column "SEPAL_LENGTH": given twice`},
		{[]string{"features", "sepal_length", "sepal_width", "petal_length", "petal width"}, nil, "given both whole and as feature columns"},
	}
	for _, tt := range tests {
		c, err := n.Bind(tt.columns)
		if tt.err != "" {
			var be *Error
			if !errors.As(err, &be) || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Bind(%q) = %v, want a bind.Error containing %q", tt.columns, err, tt.err)
			}
			continue
		}
		if err != nil || strings.Join(c.Ignored, ",") != strings.Join(tt.ignored, ",") || len(c.Order) != len(tt.columns) {
			t.Errorf("Bind(%q) = %+v, %v; want ignored %q", tt.columns, c, err, tt.ignored)
		}
	}
}

func TestColumn_convertsByOneSetOfRules(t *testing.T) {
	tests := []struct {
		dt        model.DType
		nullAsNaN bool
		set       func(c *Column) error
		want      any // the value stored
		err       string
	}{
		{model.Float32, false, func(c *Column) error { return c.Text(0, " 0.1 ") }, float32(0.1), ""},
		{model.Float32, false, func(c *Column) error { return c.Number(0, "1e39") }, float32(math.Inf(1)), ""},
		{model.Float32, false, func(c *Column) error { return c.Text(0, "abc") }, nil, `expected FLOAT (float32), got "abc"`},
		{model.Float32, false, func(c *Column) error { return c.Null(0) }, nil, "--null-as-nan"},
		{model.Float32, false, func(c *Column) error { return c.Text(0, "") }, nil, "got null"},
		{model.Float64, true, func(c *Column) error { return c.Null(0) }, math.NaN(), ""},
		{model.Int8, false, func(c *Column) error { return c.Number(0, "5.0") }, int8(5), ""},
		{model.Int8, false, func(c *Column) error { return c.Number(0, "300") }, nil, "300 is out of range for NUMBER (int8)"},
		{model.Int8, false, func(c *Column) error { return c.Float(0, 1.5) }, nil, "expected a whole number for NUMBER (int8), got 1.5"},
		{model.Int64, false, func(c *Column) error { return c.Float(0, 1e300) }, nil, "out of range"},
		{model.Int64, false, func(c *Column) error { return c.Float(0, -1e300) }, nil, "out of range"},
		{model.Uint64, false, func(c *Column) error { return c.Text(0, "18446744073709551615") }, uint64(math.MaxUint64), ""},
		{model.Uint64, false, func(c *Column) error { return c.Int(0, -1) }, nil, "-1 is out of range"},
		{model.Uint32, false, func(c *Column) error { return c.Uint(0, 1<<40) }, nil, "out of range for NUMBER (uint32)"},
		{model.Bool, false, func(c *Column) error { return c.Text(0, "true") }, true, ""},
		{model.Bool, false, func(c *Column) error { return c.Number(0, "1") }, nil, "expected BOOLEAN (bool), got the number 1"},
		{model.String, false, func(c *Column) error { return c.Text(0, "") }, "", ""},
		{model.String, false, func(c *Column) error { return c.Number(0, "5") }, nil, "expected VARCHAR (string), got the number 5"},
	}
	for _, tt := range tests {
		tensor, err := model.NewTensor(tt.dt, model.Shape{1})
		if err != nil {
			t.Fatal(err)
		}
		c := &Column{T: tensor, NullAsNaN: tt.nullAsNaN}
		err = tt.set(c)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: error %v, want %q", tt.dt, err, tt.err)
			}
			continue
		}
		got := first(tensor)
		if f, ok := tt.want.(float64); ok && math.IsNaN(f) {
			if g, ok := got.(float64); !ok || !math.IsNaN(g) {
				t.Errorf("%s: stored %v, want NaN", tt.dt, got)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("%s: stored %v (%T), %v; want %v (%T)", tt.dt, got, got, err, tt.want, tt.want)
		}
	}
}

func TestError_namesTheRowItsIDAndTheColumn(t *testing.T) {
	e := &Error{Row: 2, ID: "12", Column: "petal_length", Err: errors.New("expected FLOAT (float32), got null")}
	if got := e.Error(); got != `row 2 (id 12), column "petal_length": expected FLOAT (float32), got null` {
		t.Errorf("%s", got)
	}
	if got := AtRow(7, errors.New("bad")).Error(); got != "row 7: bad" {
		t.Errorf("%s", got)
	}
	if got := AtRow(7, Errorf(3, "x", "bad")).Error(); got != `row 3, column "x": bad` {
		t.Errorf("AtRow renamed a row already named: %s", got)
	}
}

// FuzzColumnText feeds any text to every element type: no panic, and a
// float input holds what strconv reads, rounded once.
func FuzzColumnText(f *testing.F) {
	for _, s := range []string{"0.1", "1e39", "-0", "5.0", "300", "18446744073709551615", "true", "", " nan ", "0x1p-2", "1_000"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for _, dt := range []model.DType{model.Float32, model.Float64, model.Int8, model.Int32, model.Int64, model.Uint8, model.Uint64, model.Bool, model.String} {
			tensor, _ := model.NewTensor(dt, model.Shape{1})
			c := &Column{T: tensor}
			err := c.Text(0, s)
			if dt == model.Float32 && err == nil {
				want, perr := strconv.ParseFloat(strings.TrimSpace(s), 32)
				if perr != nil && !isRange(perr) {
					t.Fatalf("%q stored as float32 though strconv refuses it", s)
				}
				if got := tensor.Data.([]float32)[0]; !(got == float32(want) || math.IsNaN(float64(got)) && math.IsNaN(want)) {
					t.Fatalf("%q stored as %v, strconv reads %v", s, got, float32(want))
				}
			}
		}
	})
}

// first is a tensor's first element.
func first(t model.Tensor) any {
	switch d := t.Data.(type) {
	case []float32:
		return d[0]
	case []float64:
		return d[0]
	case []int8:
		return d[0]
	case []int64:
		return d[0]
	case []uint64:
		return d[0]
	case []bool:
		return d[0]
	case []string:
		return d[0]
	}
	return nil
}
