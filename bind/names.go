package bind

import (
	"fmt"
	"strings"

	"github.com/modelserve/modelserve/model"
)

// Target is what one named or positioned value fills: one input whole, or
// one feature column of a feature-matrix input.
type Target struct {
	Input   int
	Feature int // -1: the input whole
}

// Whole reports whether the target is an input whole.
func (t Target) Whole() bool { return t.Feature < 0 }

// Names finds the target of a column name. Names that are SQL identifiers
// match as unquoted identifiers do, case-insensitively; others (which SQL
// must quote) only exactly. A feature-matrix input is filled by its
// feature columns, or whole by a column named for the input.
type Names struct {
	sig          model.Signature
	exact, upper map[string]Target
	features     [][]string
	usage        string
}

// NewNames is the names of sig's arguments.
func NewNames(sig model.Signature) *Names {
	n := &Names{sig: sig, exact: map[string]Target{}, upper: map[string]Target{}, features: make([][]string, len(sig.Inputs))}
	add := func(name string, t Target) {
		n.exact[name] = t
		if model.IsUnquotedIdentifier(name) {
			n.upper[strings.ToUpper(name)] = t
		}
	}
	for _, a := range sig.Arguments() {
		add(a.Name, Target{Input: a.Input, Feature: a.Feature})
	}
	for i, in := range sig.Inputs {
		if _, ok := sig.FeatureCount(i); ok {
			n.features[i] = sig.FeatureNames(i)
			if _, taken := n.exact[in.Name]; !taken {
				add(in.Name, Target{Input: i, Feature: -1})
			}
		}
	}
	n.usage = usage(sig)
	return n
}

// usage lists the argument lists a function takes, for errors.
func usage(sig model.Signature) string {
	count := func(n int) string {
		if n == 1 {
			return "1 argument"
		}
		return fmt.Sprintf("%d arguments", n)
	}
	args := sig.Arguments()
	s := fmt.Sprintf("%s (%s)", count(len(args)), sig.FormatArguments(args))
	if sig.HasFeatures() {
		whole := sig.WholeArguments()
		s += fmt.Sprintf(" or %s (%s)", count(len(whole)), sig.FormatArguments(whole))
	}
	return s
}

// Usage is the argument lists the model takes, e.g. "4 arguments
// (sepal_length FLOAT, ...) or 1 argument (features ARRAY)".
func (n *Names) Usage() string { return n.usage }

// Features are input i's feature names, nil when it is not a feature
// matrix.
func (n *Names) Features(i int) []string { return n.features[i] }

// Lookup finds the target a column name stands for.
func (n *Names) Lookup(name string) (Target, bool) {
	if t, ok := n.exact[name]; ok {
		return t, true
	}
	t, ok := n.upper[strings.ToUpper(name)]
	return t, ok
}

// LookupBytes is Lookup for a name in a request's bytes, upper-casing into
// scratch (kept by the caller between lookups) rather than allocating.
func (n *Names) LookupBytes(name []byte, scratch *[]byte) (Target, bool) {
	if t, ok := n.exact[string(name)]; ok {
		return t, true
	}
	*scratch = appendUpper((*scratch)[:0], name)
	t, ok := n.upper[string(*scratch)]
	return t, ok
}

func appendUpper(dst, s []byte) []byte {
	for _, c := range s {
		if c >= 'a' && c <= 'z' {
			c -= 'a' - 'A'
		}
		dst = append(dst, c)
	}
	return dst
}

// Columns is a set of named columns bound to the inputs.
type Columns struct {
	// Targets is each bound column's target, by column name.
	Targets map[string]Target
	// Order is the bound columns' targets in the order given (for
	// positional rows); an unknown column's is {-1, -1}.
	Order []Target
	// Ignored lists the columns the model does not take.
	Ignored []string
}

// Bind binds a table's columns to the inputs: every input filled once,
// whole or by all its features, and never twice. Columns the model does
// not take are listed in Ignored for the caller to refuse or skip.
func (n *Names) Bind(columns []string) (*Columns, error) {
	c := &Columns{Targets: map[string]Target{}}
	whole := make([]string, len(n.sig.Inputs))
	features := make([][]string, len(n.sig.Inputs))
	for _, name := range columns {
		t, ok := n.Lookup(name)
		if !ok {
			c.Ignored = append(c.Ignored, name)
			c.Order = append(c.Order, Target{Input: -1, Feature: -1})
			continue
		}
		if t.Whole() {
			if prev := whole[t.Input]; prev != "" {
				return nil, Errorf(-1, name, "given twice: %q and %q both fill input %q", prev, name, n.sig.Inputs[t.Input].Name)
			}
			whole[t.Input] = name
		} else {
			if features[t.Input] == nil {
				features[t.Input] = make([]string, len(n.features[t.Input]))
			}
			if prev := features[t.Input][t.Feature]; prev != "" {
				return nil, Errorf(-1, name, "given twice: %q and %q both fill %q", prev, name, n.features[t.Input][t.Feature])
			}
			features[t.Input][t.Feature] = name
		}
		c.Targets[name] = t
		c.Order = append(c.Order, t)
	}
	var missing []string
	for i, in := range n.sig.Inputs {
		switch {
		case whole[i] != "" && features[i] != nil:
			return nil, Errorf(-1, whole[i], "input %q is given both whole and as feature columns; send one or the other", in.Name)
		case whole[i] != "":
		case features[i] != nil:
			for f, col := range features[i] {
				if col == "" {
					missing = append(missing, n.features[i][f])
				}
			}
		case n.features[i] != nil:
			missing = append(missing, strings.Join(n.features[i], ", ")+" (or "+in.Name+")")
		default:
			missing = append(missing, in.Name)
		}
	}
	if len(missing) > 0 {
		return nil, Errorf(-1, "", "the input has no column for %s; the model takes %s", strings.Join(missing, ", "), n.usage)
	}
	return c, nil
}
