package model

import (
	"encoding/json"
	"reflect"
	"strings"
	"testing"
)

func irisSignature() Signature {
	return Signature{
		Inputs:  []Spec{{Name: "features", DType: Float32, Shape: Shape{-1, 4}}},
		Outputs: []Spec{{Name: "label", DType: Int64, Shape: Shape{-1}}, {Name: "probabilities", DType: Float32, Shape: Shape{-1, 3}}},
		Functions: []Function{
			{Name: "predict", Outputs: []string{"label"}},
			{Name: "predict_proba", Outputs: []string{"probabilities"}},
		},
	}
}

func TestSignature_argumentsSpreadFeatureMatrices(t *testing.T) {
	named := irisSignature()
	named.Features = map[string][]string{"features": {"a", "b", "c", "d"}}
	mixed := Signature{Inputs: []Spec{
		{Name: "text", DType: String, Shape: Shape{-1}},
		{Name: "one", DType: Float64, Shape: Shape{-1, 1}},
		{Name: "pixels", DType: Float32, Shape: Shape{-1, 2, 3}},
		{Name: "tokens", DType: Int64, Shape: Shape{-1, -1}},
		{Name: "flags", DType: Bool, Shape: Shape{-1, 2}},
	}}
	tests := []struct {
		name string
		sig  Signature
		want string
	}{
		{"default names", irisSignature(), "features_0 FLOAT, features_1 FLOAT, features_2 FLOAT, features_3 FLOAT"},
		{"named features", named, "a FLOAT, b FLOAT, c FLOAT, d FLOAT"},
		{"one of each kind", mixed, "text VARCHAR, one FLOAT, pixels ARRAY, tokens ARRAY, flags ARRAY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.sig.FormatArguments(tt.sig.Arguments()); got != tt.want {
				t.Errorf("arguments = %q, want %q", got, tt.want)
			}
		})
	}
	if got := irisSignature().FormatArguments(irisSignature().WholeArguments()); got != "features ARRAY" {
		t.Errorf("whole arguments = %q", got)
	}
}

func TestSignature_validateNamesTheProblem(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Signature)
		want   string
	}{
		{"unknown output", func(s *Signature) { s.Functions[0].Outputs = []string{"nope"} }, `returns "nope"`},
		{"no functions", func(s *Signature) { s.Functions = nil }, "no functions"},
		{"bad function name", func(s *Signature) { s.Functions[0].Name = "pre-dict" }, "must start with a letter"},
		{"same function twice", func(s *Signature) { s.Functions[1].Name = "predict" }, "two functions"},
		{"feature count", func(s *Signature) { s.Features = map[string][]string{"features": {"a"}} }, "has 4 features, but 1 names"},
		{"features of no input", func(s *Signature) { s.Features = map[string][]string{"x": {"a"}} }, `input "x"`},
		{"scalar input", func(s *Signature) { s.Inputs[0].Shape = nil }, "no batch dimension"},
		{"sequence output served", func(s *Signature) { s.Outputs[0] = Spec{Name: "label", Kind: "sequence"} }, "a sequence"},
		{"argument names collide", func(s *Signature) { s.Features = map[string][]string{"features": {"a", "A", "b", "c"}} }, "used twice"},
	}
	if err := irisSignature().Validate(); err != nil {
		t.Fatalf("iris signature: %v", err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := irisSignature()
			tt.change(&s)
			err := s.Validate()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Validate() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestSignature_defaultFunctionAndPaths(t *testing.T) {
	s := irisSignature()
	if got := s.DefaultFunction().Name; got != "predict" {
		t.Errorf("default = %q", got)
	}
	s.Functions = s.Functions[1:]
	if got := s.DefaultFunction().Name; got != "predict_proba" {
		t.Errorf("default without predict = %q", got)
	}
	if got := s.Functions[0].Path(); got != "/predict-proba" {
		t.Errorf("path = %q", got)
	}
	s = irisSignature()
	s.Outputs = append(s.Outputs, Spec{Name: "unused", DType: Float32, Shape: Shape{-1}})
	if got := s.FetchedOutputs(); !reflect.DeepEqual(got, []string{"label", "probabilities"}) {
		t.Errorf("fetched = %v", got)
	}
}

func TestTensor_sliceAndConcatRows(t *testing.T) {
	a := Tensor{DType: Float32, Shape: Shape{3, 2}, Data: []float32{1, 2, 3, 4, 5, 6}}
	mid := a.SliceRows(1, 3)
	if !reflect.DeepEqual(mid.Shape, Shape{2, 2}) || !reflect.DeepEqual(mid.Data, []float32{3, 4, 5, 6}) {
		t.Fatalf("slice = %+v", mid)
	}
	joined, err := ConcatRows([]Tensor{mid, a.SliceRows(0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(joined.Data, []float32{3, 4, 5, 6, 1, 2}) || joined.Rows() != 3 {
		t.Errorf("concat = %+v", joined)
	}
	s := Tensor{DType: String, Shape: Shape{2}, Data: []string{"a", "bc"}}
	if s.Bytes() != 2*16+3 {
		t.Errorf("string bytes = %d", s.Bytes())
	}
	if _, err := ConcatRows([]Tensor{a, s}); err == nil {
		t.Error("concatenating float32 and string rows should fail")
	}
}

func TestDType_textRoundTrip(t *testing.T) {
	for d := Invalid; d <= String; d++ {
		b, err := json.Marshal(d)
		if err != nil {
			t.Fatalf("%s: %v", d, err)
		}
		var back DType
		if err := json.Unmarshal(b, &back); err != nil || back != d {
			t.Errorf("%s round-tripped to %s (%v)", d, back, err)
		}
	}
	if _, err := ParseDType("bfloat16"); err == nil {
		t.Error("bfloat16 should not parse")
	}
}
