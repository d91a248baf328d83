package spec

import (
	"fmt"
	"math/big"
	"regexp"
	"strings"
)

// A Quantity is an amount written with the reference's units: binary Ki, Mi,
// Gi; decimal k, M, G; and m for thousandths, so "500m" CPU is half a core
// and "2G" of memory is 2,000,000,000 bytes. It is kept exactly, in
// thousandths, together with the text the user wrote.
type Quantity struct {
	milli int64
	text  string
}

// quantityUnits are the suffixes the reference defines, longest first so
// "Mi" is not read as "M".
var quantityUnits = []struct {
	suffix string
	milli  *big.Rat // thousandths per unit
}{
	{"Ki", big.NewRat(1000<<10, 1)},
	{"Mi", big.NewRat(1000<<20, 1)},
	{"Gi", big.NewRat(1000<<30, 1)},
	{"k", big.NewRat(1e6, 1)},
	{"M", big.NewRat(1e9, 1)},
	{"G", big.NewRat(1e12, 1)},
	{"m", big.NewRat(1, 1)},
}

var decimalRE = regexp.MustCompile(`^([0-9]+(\.[0-9]*)?|\.[0-9]+)$`)

// ParseQuantity reads "2G", "48Gi", "0.5", "500m", "4096".
func ParseQuantity(s string) (Quantity, error) {
	text := strings.TrimSpace(s)
	num, per := text, big.NewRat(1000, 1)
	for _, u := range quantityUnits {
		if n, ok := strings.CutSuffix(text, u.suffix); ok {
			num, per = n, u.milli
			break
		}
	}
	// Plain decimals only: big.Rat would also take fractions, exponents
	// and 0x/0b prefixes, which the reference does not.
	if len(num) > 40 || !decimalRE.MatchString(num) {
		return Quantity{}, fmt.Errorf("%q is not a quantity: write a number with an optional unit (Ki, Mi, Gi, k, M, G, m), e.g. 2Gi or 500m", s)
	}
	r, ok := new(big.Rat).SetString(num)
	if !ok {
		return Quantity{}, fmt.Errorf("%q is not a quantity: write a number with an optional unit (Ki, Mi, Gi, k, M, G, m), e.g. 2Gi or 500m", s)
	}
	r.Mul(r, per)
	if !r.IsInt() {
		return Quantity{}, fmt.Errorf("%q is finer than a thousandth", s)
	}
	if !r.Num().IsInt64() {
		return Quantity{}, fmt.Errorf("%q is too large", s)
	}
	return Quantity{milli: r.Num().Int64(), text: text}, nil
}

// MustQuantity is ParseQuantity for constants in code and tests.
func MustQuantity(s string) Quantity {
	q, err := ParseQuantity(s)
	if err != nil {
		panic(err)
	}
	return q
}

// Milli is the amount in thousandths: CPU in millicores.
func (q Quantity) Milli() int64 { return q.milli }

// Value is the amount rounded up to a whole number: bytes, GPUs.
func (q Quantity) Value() int64 { return (q.milli + 999) / 1000 }

// Whole reports whether the amount is a whole number (bytes and GPUs must be).
func (q Quantity) Whole() bool { return q.milli%1000 == 0 }

// IsZero reports whether the quantity was never set.
func (q Quantity) IsZero() bool { return q.text == "" }

// String is the quantity as the user wrote it.
func (q Quantity) String() string { return q.text }

// Cmp compares two quantities by amount: -1, 0 or +1.
func (q Quantity) Cmp(o Quantity) int {
	switch {
	case q.milli < o.milli:
		return -1
	case q.milli > o.milli:
		return 1
	}
	return 0
}
