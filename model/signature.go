package model

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// Spec describes one input or output of a model.
type Spec struct {
	Name  string `json:"name"`
	DType DType  `json:"dtype"`
	// Shape's first dimension is the batch; -1 marks an open dimension.
	Shape Shape `json:"shape"`
	// Kind is empty for a tensor, else the ONNX value type ("sequence",
	// "map"), which modelserve lists but does not serve.
	Kind string `json:"kind,omitempty"`
}

// TypeString describes the value for people: "float32[?, 4]", "sequence".
func (s Spec) TypeString() string {
	if s.Kind != "" {
		return s.Kind
	}
	return s.DType.String() + s.Shape.String()
}

// RowBytes estimates the bytes one row of the value takes, counting an
// open dimension as 1 (and a string as its header).
func (s Spec) RowBytes() int64 {
	n := int64(s.DType.Size())
	for _, d := range s.RowShape() {
		n *= max(d, 1)
	}
	return n
}

// RowShape is the shape of one row's value: the dimensions after the batch.
func (s Spec) RowShape() Shape {
	if len(s.Shape) == 0 {
		return nil
	}
	return s.Shape[1:]
}

// NewRows allocates a zeroed tensor of rows rows of the value, open
// dimensions 1: inputs for a warm-up or a measurement.
func (s Spec) NewRows(rows int) (Tensor, error) {
	shape := append(Shape{int64(rows)}, s.RowShape()...)
	for d := 1; d < len(shape); d++ {
		shape[d] = max(shape[d], 1)
	}
	t, err := NewTensor(s.DType, shape)
	if err != nil {
		return Tensor{}, fmt.Errorf("input %q: %w", s.Name, err)
	}
	return t, nil
}

// Function is a named view of a model that returns some of its outputs, in
// the order given (for example predict=label, predict_proba=probabilities).
type Function struct {
	Name    string   `json:"name"`
	Outputs []string `json:"outputs"`
	// NullAsNaN reads a SQL NULL for a float argument as NaN (models that
	// treat NaN as missing); otherwise NULL is refused.
	NullAsNaN bool `json:"null_as_nan,omitempty"`
}

// Path is the HTTP route of the function: underscores become hyphens, as
// the SQL gateway's service functions expect (predict_proba → /predict-proba).
func (f Function) Path() string {
	return "/" + strings.ReplaceAll(f.Name, "_", "-")
}

// Signature is what serving needs to know about a model version: its
// inputs and outputs as read from the graph, its functions, and the names
// of the scalar arguments a feature-matrix input may be spread over.
type Signature struct {
	Inputs    []Spec     `json:"inputs"`
	Outputs   []Spec     `json:"outputs"`
	Functions []Function `json:"functions"`
	// Features names the columns of a [batch, F] numeric input, keyed by
	// input name. An expandable input without an entry takes <input>_0..F-1.
	Features map[string][]string `json:"features,omitempty"`
}

// DefaultFunction is the function POST /predict runs: the one named
// predict, or else the first one.
func (s Signature) DefaultFunction() Function {
	for _, f := range s.Functions {
		if f.Name == "predict" {
			return f
		}
	}
	if len(s.Functions) == 0 {
		return Function{}
	}
	return s.Functions[0]
}

// Function finds a function by name.
func (s Signature) Function(name string) (Function, bool) {
	for _, f := range s.Functions {
		if f.Name == name {
			return f, true
		}
	}
	return Function{}, false
}

// Output finds an output by name, with its index.
func (s Signature) Output(name string) (Spec, int, bool) {
	for i, o := range s.Outputs {
		if o.Name == name {
			return o, i, true
		}
	}
	return Spec{}, -1, false
}

// FeatureCount reports whether input i is a numeric [batch, F] matrix whose
// F columns a caller may send as F scalar arguments, and F.
func (s Signature) FeatureCount(i int) (int, bool) {
	in := s.Inputs[i]
	if len(in.Shape) != 2 || in.Shape[1] < 1 || !in.DType.IsNumeric() {
		return 0, false
	}
	return int(in.Shape[1]), true
}

// FeatureNames are the scalar argument names of an expandable input.
func (s Signature) FeatureNames(i int) []string {
	in := s.Inputs[i]
	if names, ok := s.Features[in.Name]; ok {
		return names
	}
	f, _ := s.FeatureCount(i)
	if f == 1 {
		return []string{in.Name}
	}
	names := make([]string, f)
	for j := range names {
		names[j] = in.Name + "_" + strconv.Itoa(j)
	}
	return names
}

// Argument is one SQL argument of a function.
type Argument struct {
	Name string
	// Input is the index of the model input the argument fills.
	Input int
	// Feature is the column of a feature-matrix input the argument fills,
	// or -1 when the argument is the input's whole row value.
	Feature int
}

// SQLType is the warehouse type the argument is declared with.
func (a Argument) SQLType(s Signature) string {
	in := s.Inputs[a.Input]
	if a.Feature >= 0 || len(in.RowShape()) == 0 {
		return in.DType.SQLType()
	}
	return "ARRAY"
}

// Arguments lists the SQL arguments in call order: each input is one
// argument, except that a feature matrix is spread over its F columns.
func (s Signature) Arguments() []Argument {
	var args []Argument
	for i, in := range s.Inputs {
		if _, ok := s.FeatureCount(i); ok {
			for j, name := range s.FeatureNames(i) {
				args = append(args, Argument{Name: name, Input: i, Feature: j})
			}
			continue
		}
		args = append(args, Argument{Name: in.Name, Input: i, Feature: -1})
	}
	return args
}

// WholeArguments lists one argument per input, the form in which a
// feature matrix arrives as one array.
func (s Signature) WholeArguments() []Argument {
	args := make([]Argument, len(s.Inputs))
	for i, in := range s.Inputs {
		args[i] = Argument{Name: in.Name, Input: i, Feature: -1}
	}
	return args
}

// HasFeatures reports whether some input can be spread over features, so
// that Arguments and WholeArguments differ.
func (s Signature) HasFeatures() bool {
	for i := range s.Inputs {
		if _, ok := s.FeatureCount(i); ok {
			return true
		}
	}
	return false
}

// FormatArguments writes an argument list as SQL declares it:
// "sepal_length FLOAT, sepal_width FLOAT".
func (s Signature) FormatArguments(args []Argument) string {
	parts := make([]string, len(args))
	for i, a := range args {
		parts[i] = a.Name + " " + a.SQLType(s)
	}
	return strings.Join(parts, ", ")
}

// Validate checks that the signature can be served: every input has a batch
// dimension, functions name outputs that exist, and feature names fit.
func (s Signature) Validate() error {
	if len(s.Inputs) == 0 {
		return fmt.Errorf("the model has no inputs")
	}
	if len(s.Outputs) == 0 {
		return fmt.Errorf("the model has no outputs")
	}
	for _, in := range s.Inputs {
		if len(in.Shape) == 0 {
			return fmt.Errorf("input %q is a scalar with no batch dimension; modelserve needs a batch dimension first", in.Name)
		}
		if in.Kind != "" || in.DType == Invalid {
			return fmt.Errorf("input %q is a %s, which modelserve cannot carry", in.Name, in.TypeString())
		}
	}
	if len(s.Functions) == 0 {
		return fmt.Errorf("the model has no functions")
	}
	seen := map[string]bool{}
	for _, f := range s.Functions {
		if err := CheckName(FunctionName, f.Name); err != nil {
			return err
		}
		if seen[f.Path()] {
			return fmt.Errorf("two functions map to the route %s", f.Path())
		}
		seen[f.Path()] = true
		if len(f.Outputs) == 0 {
			return fmt.Errorf("function %q returns no outputs", f.Name)
		}
		for _, o := range f.Outputs {
			spec, _, ok := s.Output(o)
			if !ok {
				return fmt.Errorf("function %q returns %q, but the model's outputs are %s", f.Name, o, s.outputNames())
			}
			if spec.Kind != "" || spec.DType == Invalid {
				return fmt.Errorf("function %q returns %q, a %s, which modelserve cannot encode", f.Name, o, spec.TypeString())
			}
		}
	}
	for name, cols := range s.Features {
		i := s.inputIndex(name)
		if i < 0 {
			return fmt.Errorf("features are named for input %q, which the model does not have", name)
		}
		f, ok := s.FeatureCount(i)
		if !ok {
			return fmt.Errorf("features are named for input %q, but only a numeric [batch, F] input can be spread over features (it is %s%s)", name, s.Inputs[i].DType, s.Inputs[i].Shape)
		}
		if len(cols) != f {
			return fmt.Errorf("input %q has %d features, but %d names were given", name, f, len(cols))
		}
	}
	names := map[string]bool{}
	for _, a := range s.Arguments() {
		key := strings.ToUpper(a.Name)
		if names[key] {
			return fmt.Errorf("argument name %q is used twice (names match case-insensitively)", a.Name)
		}
		names[key] = true
	}
	return nil
}

// IsUnquotedIdentifier reports a name SQL takes without quotes: a letter or
// underscore, then letters, digits, underscores or dollar signs. Such a
// name matches case-insensitively, as SQL folds it; any other name must be
// quoted and matches exactly.
func IsUnquotedIdentifier(name string) bool {
	if name == "" {
		return false
	}
	for i, r := range name {
		letter := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_'
		if !letter && (i == 0 || !(r >= '0' && r <= '9' || r == '$')) {
			return false
		}
	}
	return true
}

func (s Signature) inputIndex(name string) int {
	for i, in := range s.Inputs {
		if in.Name == name {
			return i
		}
	}
	return -1
}

func (s Signature) outputNames() string {
	names := make([]string, len(s.Outputs))
	for i, o := range s.Outputs {
		names[i] = o.Name
	}
	return strings.Join(names, ", ")
}

// OutputRowBytes estimates the bytes of the fetched outputs of one row.
func (s Signature) OutputRowBytes() int64 {
	var n int64
	for _, name := range s.FetchedOutputs() {
		o, _, _ := s.Output(name)
		n += o.RowBytes()
	}
	return n
}

// RowBytes is what one row holds by admission's count: its inputs and
// the outputs it produces.
func (s Signature) RowBytes() int64 {
	n := s.OutputRowBytes()
	for _, in := range s.Inputs {
		n += in.RowBytes()
	}
	return n
}

// FetchedOutputs are the outputs some function returns, in the model's
// output order: what a worker fetches, so outputs no function needs are
// never converted.
func (s Signature) FetchedOutputs() []string {
	var out []string
	for _, o := range s.Outputs {
		for _, f := range s.Functions {
			if slices.Contains(f.Outputs, o.Name) {
				out = append(out, o.Name)
				break
			}
		}
	}
	return out
}
