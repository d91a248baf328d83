package model

import "math"

// Half is an IEEE 754 half-precision number, as its bits: what ONNX
// models call float16 and the Open Inference Protocol FP16.
type Half uint16

// Float32 is h's value, exactly.
func (h Half) Float32() float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	frac := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // infinity or NaN
		return math.Float32frombits(sign | 0xff<<23 | frac<<13)
	case exp == 0 && frac == 0:
		return math.Float32frombits(sign)
	case exp == 0: // subnormal: normalize
		e := uint32(127 - 15 + 1)
		for frac&0x400 == 0 {
			frac <<= 1
			e--
		}
		return math.Float32frombits(sign | e<<23 | (frac&0x3ff)<<13)
	}
	return math.Float32frombits(sign | (exp+127-15)<<23 | frac<<13)
}

// ToHalf rounds f to the nearest half-precision number, ties to even;
// past the largest (65504) it is infinity.
func ToHalf(f float64) Half {
	if math.IsNaN(f) {
		return 0x7e00
	}
	bits := math.Float64bits(f)
	sign := Half(bits>>63) << 15
	a := math.Abs(f)
	switch {
	case a >= 65520: // rounds past 65504
		return sign | 0x7c00
	case a < 0x1p-25: // rounds to zero (half of the least subnormal, tie to even)
		return sign
	}
	// The value in units of the least subnormal (2^-24), or of its own
	// exponent's step, rounded to nearest even.
	exp := math.Ilogb(a)
	if exp < -14 { // subnormal
		q := math.RoundToEven(a * 0x1p24)
		return sign | Half(q) // q may reach 1024: the least normal, correctly
	}
	m := math.RoundToEven(math.Ldexp(a, 10-exp)) // 1024..2048
	if m == 2048 {
		m, exp = 1024, exp+1
	}
	if exp > 15 {
		return sign | 0x7c00
	}
	return sign | Half(exp+15)<<10 | Half(m-1024)
}
