package model

import (
	"math"
	"testing"
)

func TestFloat16_roundTripsEveryValue(t *testing.T) {
	for b := range 1 << 16 {
		h := Half(b)
		f := h.Float32()
		if math.IsNaN(float64(f)) {
			if g := ToHalf(float64(f)); g.Float32() == g.Float32() {
				t.Fatalf("NaN %#04x came back as %#04x", b, g)
			}
			continue
		}
		if g := ToHalf(float64(f)); g != h {
			t.Fatalf("%#04x = %v came back as %#04x", b, f, g)
		}
	}
	tests := []struct {
		f    float64
		want Half
	}{
		{1, 0x3c00}, {-2, 0xc000}, {65504, 0x7bff}, {65519, 0x7bff}, {65520, 0x7c00}, {1e9, 0x7c00},
		{0x1p-24, 0x0001}, {0x1p-25, 0x0000}, {0x1.8p-25, 0x0001}, {0x1p-14, 0x0400},
		{1 + 0x1p-11, 0x3c00}, {1 + 0x3p-11, 0x3c02}, // ties to even
		{0.1, 0x2e66},
	}
	for _, tt := range tests {
		if got := ToHalf(tt.f); got != tt.want {
			t.Errorf("ToHalf(%v) = %#04x, want %#04x", tt.f, got, tt.want)
		}
	}
}
