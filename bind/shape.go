package bind

import (
	"fmt"
	"slices"

	"github.com/modelserve/modelserve/model"
)

// RowShape fits an array's shape (got: its sizes, nested as sent) to an
// input's row shape (want, -1 for an open dimension): nested to the same
// depth, its sizes must match the fixed dimensions and fill the open ones;
// flat, it fills the row in order and may leave one dimension open, which
// its length then fixes.
func RowShape(want, got model.Shape) (model.Shape, error) {
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
