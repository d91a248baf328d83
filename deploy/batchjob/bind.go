package batchjob

import (
	"fmt"
	"slices"
	"strings"

	"github.com/modelserve/modelserve/bind"
	"github.com/modelserve/modelserve/model"
)

// binding maps a file's columns to the model's inputs by name, as the
// server maps a wide row's keys (bind.Names): a feature matrix comes
// either as one column of arrays named for the input or as one column per
// feature.
type binding struct {
	sig       model.Signature
	nullAsNaN bool
	targets   map[string]bind.Target // by file column name
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

func newBinding(sig model.Signature, fn model.Function, columns []string, idColumn string) (*binding, error) {
	b := &binding{sig: sig, nullAsNaN: fn.NullAsNaN}
	for _, in := range sig.Inputs {
		b.rowShapes = append(b.rowShapes, in.RowShape())
	}
	if idColumn != "" && !slices.Contains(columns, idColumn) {
		return nil, fmt.Errorf("the id column %q is not in the input; its columns are %s", idColumn, strings.Join(columns, ", "))
	}
	b.id = idColumn
	bound, err := bind.NewNames(sig).Bind(slices.DeleteFunc(slices.Clone(columns), func(c string) bool { return c == idColumn }))
	if err != nil {
		return nil, err
	}
	b.targets, b.ignored = bound.Targets, bound.Ignored
	return b, nil
}
