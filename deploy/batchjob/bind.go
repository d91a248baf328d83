package batchjob

import (
	"fmt"
	"slices"
	"strings"

	"github.com/modelserve/modelserve/model"
)

// target is what one file column fills: one model input, whole, or one
// column of a feature-matrix input.
type target struct {
	input   int
	feature int // -1: the whole input
	column  string
}

// binding maps a file's columns to the model's inputs by name, as the
// server maps a wide row's keys: names that are SQL identifiers match
// case-insensitively, others exactly. A feature matrix comes either as one
// column of arrays named for the input or as one column per feature.
type binding struct {
	sig       model.Signature
	nullAsNaN bool
	targets   map[string]target // by file column name
	// id is the file column that holds row ids, or "" to number rows from 0.
	id string
	// ignored lists the file's columns the model does not take.
	ignored []string
	// rowShapes is each input's row shape as the signature has it (-1 open).
	rowShapes []model.Shape
}

// IDColumnDefault names the output column of row numbers when the input
// has no id column.
const IDColumnDefault = "row"

func bind(sig model.Signature, fn model.Function, columns []string, idColumn string) (*binding, error) {
	b := &binding{sig: sig, nullAsNaN: fn.NullAsNaN, targets: map[string]target{}}
	for _, in := range sig.Inputs {
		b.rowShapes = append(b.rowShapes, in.RowShape())
	}
	exact, upper := map[string]target{}, map[string]target{}
	add := func(name string, t target) {
		exact[name] = t
		if model.IsUnquotedIdentifier(name) {
			upper[strings.ToUpper(name)] = t
		}
	}
	for _, a := range sig.Arguments() {
		add(a.Name, target{input: a.Input, feature: a.Feature})
	}
	for i, in := range sig.Inputs {
		if _, ok := sig.FeatureCount(i); ok {
			if _, taken := exact[in.Name]; !taken {
				add(in.Name, target{input: i, feature: -1})
			}
		}
	}
	if idColumn != "" && !slices.Contains(columns, idColumn) {
		return nil, fmt.Errorf("the id column %q is not in the input; its columns are %s", idColumn, strings.Join(columns, ", "))
	}
	b.id = idColumn
	whole := make([]string, len(sig.Inputs))
	features := make([][]string, len(sig.Inputs))
	for _, c := range columns {
		if c == idColumn {
			continue
		}
		t, ok := exact[c]
		if !ok {
			t, ok = upper[strings.ToUpper(c)]
		}
		if !ok {
			b.ignored = append(b.ignored, c)
			continue
		}
		t.column = c
		if t.feature < 0 {
			if whole[t.input] != "" {
				return nil, fmt.Errorf("columns %q and %q both fill input %q", whole[t.input], c, sig.Inputs[t.input].Name)
			}
			whole[t.input] = c
		} else {
			if features[t.input] == nil {
				features[t.input] = make([]string, len(sig.FeatureNames(t.input)))
			}
			if prev := features[t.input][t.feature]; prev != "" {
				return nil, fmt.Errorf("columns %q and %q both fill %q", prev, c, sig.FeatureNames(t.input)[t.feature])
			}
			features[t.input][t.feature] = c
		}
		b.targets[c] = t
	}
	var missing []string
	for i, in := range sig.Inputs {
		switch {
		case whole[i] != "" && features[i] != nil:
			return nil, fmt.Errorf("input %q comes both as the column %q and as feature columns; give one or the other", in.Name, whole[i])
		case whole[i] != "":
		case features[i] != nil:
			for f, c := range features[i] {
				if c == "" {
					missing = append(missing, sig.FeatureNames(i)[f])
				}
			}
		default:
			if _, ok := sig.FeatureCount(i); ok {
				missing = append(missing, strings.Join(sig.FeatureNames(i), ", ")+" (or "+in.Name+")")
			} else {
				missing = append(missing, in.Name)
			}
		}
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the input has no column for %s; the model takes %s", strings.Join(missing, ", "), usage(sig))
	}
	return b, nil
}

func usage(sig model.Signature) string {
	s := sig.FormatArguments(sig.Arguments())
	if sig.HasFeatures() {
		s += ", or " + sig.FormatArguments(sig.WholeArguments())
	}
	return s
}

// RowError is a problem with one input row, worded for the user: it names
// the row (its number in the file from 0, and its id when the file has
// one) and the column.
type RowError struct {
	Row    int64
	ID     string
	Column string
	Err    error
}

func (e *RowError) Error() string {
	var b strings.Builder
	fmt.Fprintf(&b, "input row %d", e.Row)
	if e.ID != "" {
		fmt.Fprintf(&b, " (id %s)", e.ID)
	}
	if e.Column != "" {
		fmt.Fprintf(&b, ", column %q", e.Column)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *RowError) Unwrap() error { return e.Err }

// resolveRowShape fits an array's shape to an input's row shape: nested to
// the same depth, its sizes fill the open dimensions; flat, it fills the
// row in order, and may leave one dimension open.
func resolveRowShape(want, got model.Shape) (model.Shape, error) {
	if len(want) == len(got) {
		for k := range want {
			if want[k] >= 0 && want[k] != got[k] {
				return nil, fmt.Errorf("an array of shape %s where %s belongs", got, want)
			}
		}
		return got, nil
	}
	if len(got) != 1 {
		return nil, fmt.Errorf("an array nested %d deep where shape %s belongs", len(got), want)
	}
	n, fixed, open := got[0], int64(1), -1
	for k, d := range want {
		switch {
		case d >= 0:
			fixed *= d
		case open >= 0:
			return nil, fmt.Errorf("cannot tell the shape %s from a flat array: nest the arrays", want)
		default:
			open = k
		}
	}
	out := slices.Clone(want)
	switch {
	case open < 0 && n != fixed:
		return nil, fmt.Errorf("an array of %d elements where %d belong (shape %s)", n, fixed, want)
	case open >= 0 && (fixed == 0 || n%fixed != 0):
		return nil, fmt.Errorf("an array of %d elements cannot fill shape %s", n, want)
	case open >= 0:
		out[open] = n / fixed
	}
	return out, nil
}
