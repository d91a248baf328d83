package bind

import (
	"slices"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/model"
)

func TestRowShape(t *testing.T) {
	tests := []struct {
		want, got model.Shape
		out       model.Shape
		err       string
	}{
		{model.Shape{4}, model.Shape{4}, model.Shape{4}, ""},
		{model.Shape{4}, model.Shape{3}, nil, "shape [3] where [4] belongs"},
		{model.Shape{-1}, model.Shape{7}, model.Shape{7}, ""},
		{model.Shape{2, 3}, model.Shape{6}, model.Shape{2, 3}, ""},
		{model.Shape{2, 3}, model.Shape{5}, nil, "5 elements where 6 belong"},
		{model.Shape{-1, 3}, model.Shape{9}, model.Shape{3, 3}, ""},
		{model.Shape{-1, -1}, model.Shape{9}, nil, "nest the arrays"},
		{model.Shape{-1, -1}, model.Shape{2, 5}, model.Shape{2, 5}, ""},
		{model.Shape{2, 3, 3}, model.Shape{2, 9}, nil, "nested 2 deep"},
	}
	for _, tt := range tests {
		out, err := RowShape(tt.want, tt.got)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("RowShape(%v, %v) error %v, want %q", tt.want, tt.got, err, tt.err)
			}
			continue
		}
		if err != nil || !slices.Equal(out, tt.out) {
			t.Errorf("RowShape(%v, %v) = %v, %v; want %v", tt.want, tt.got, out, err, tt.out)
		}
	}
}
