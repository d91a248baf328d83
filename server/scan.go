package server

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
	"unsafe"

	"github.com/modelserve/modelserve/model"
)

// scanner reads JSON from a byte slice one token at a time, without
// building a tree: the decoder pulls each value and writes it straight
// into the tensor that wants it. A scanner is a value; copying one saves
// a position to come back to.
type scanner struct {
	b []byte
	i int
	// esc holds the last string that had escapes, unescaped.
	esc []byte
}

// kind is what the next value is, from its first byte.
type kind byte

const (
	kindEnd kind = iota
	kindNull
	kindBool
	kindNumber
	kindString
	kindArray
	kindObject
	kindInvalid
)

func (s *scanner) ws() { s.i = skipSpace(s.b, s.i) }

// skipSpace is the first position from i that is not JSON's white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && b[i] <= ' ' && isSpace(b[i]) {
		i++
	}
	return i
}

func isSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r'
}

// peek is the next byte that is not white space; 0 at the end.
func (s *scanner) peek() byte {
	s.ws()
	if s.i >= len(s.b) {
		return 0
	}
	return s.b[s.i]
}

func (s *scanner) kind() kind {
	switch c := s.peek(); {
	case c == 0:
		return kindEnd
	case c == 'n':
		return kindNull
	case c == 't' || c == 'f':
		return kindBool
	case c == '"':
		return kindString
	case c == '[':
		return kindArray
	case c == '{':
		return kindObject
	case c == '-' || c >= '0' && c <= '9':
		return kindNumber
	}
	return kindInvalid
}

// consume takes c if it comes next.
func (s *scanner) consume(c byte) bool {
	if s.peek() == c {
		s.i++
		return true
	}
	return false
}

// errSyntax reports malformed JSON at the current position.
func (s *scanner) errSyntax(want string) error {
	if s.i >= len(s.b) {
		return fmt.Errorf("the body is not valid JSON: it ends where %s should come", want)
	}
	return fmt.Errorf("the body is not valid JSON: expected %s at byte %d, found %q", want, s.i, s.b[s.i])
}

func (s *scanner) expect(c byte) error {
	if !s.consume(c) {
		return s.errSyntax(strconv.QuoteRune(rune(c)))
	}
	return nil
}

// number returns the next number's text, which must follow JSON's grammar:
// no leading zeros, digits on both sides of a point, a whole exponent.
func (s *scanner) number() ([]byte, error) {
	s.ws()
	b, start := s.b, s.i
	i := start
	digits := func() int {
		from := i
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
		return i - from
	}
	if i < len(b) && b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case digits() == 0:
		return nil, s.errSyntax("a number")
	}
	ok := true
	if i < len(b) && b[i] == '.' {
		i++
		ok = digits() > 0
	}
	if ok && i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		ok = digits() > 0
	}
	// A number ends where its grammar does: 01 or 1.5.2 is none.
	if !ok || i < len(b) && numberByte(b[i]) {
		return nil, fmt.Errorf("the body is not valid JSON: a malformed number at byte %d", start)
	}
	s.i = i
	return b[start:i], nil
}

// str returns the next string, unescaped. Without escapes it aliases the
// body; with them it is valid until the next call.
func (s *scanner) str() ([]byte, error) {
	if s.peek() != '"' {
		return nil, s.errSyntax("a string")
	}
	s.i++
	start := s.i
	for s.i < len(s.b) {
		switch c := s.b[s.i]; {
		case c == '"':
			s.i++
			return s.b[start : s.i-1], nil
		case c == '\\':
			return s.unescape(start)
		case c < 0x20:
			return nil, fmt.Errorf("the body is not valid JSON: a control character inside a string at byte %d", s.i)
		}
		s.i++
	}
	return nil, s.errSyntax(`the end of a string`)
}

func (s *scanner) unescape(start int) ([]byte, error) {
	out := append(s.esc[:0], s.b[start:s.i]...)
	for s.i < len(s.b) {
		c := s.b[s.i]
		switch {
		case c == '"':
			s.i++
			s.esc = out
			return out, nil
		case c < 0x20:
			return nil, fmt.Errorf("the body is not valid JSON: a control character inside a string at byte %d", s.i)
		case c != '\\':
			out = append(out, c)
			s.i++
			continue
		}
		if s.i+1 >= len(s.b) {
			break
		}
		s.i += 2
		switch e := s.b[s.i-1]; e {
		case '"', '\\', '/':
			out = append(out, e)
		case 'b':
			out = append(out, '\b')
		case 'f':
			out = append(out, '\f')
		case 'n':
			out = append(out, '\n')
		case 'r':
			out = append(out, '\r')
		case 't':
			out = append(out, '\t')
		case 'u':
			r, ok := s.hex4()
			if !ok {
				return nil, fmt.Errorf(`the body is not valid JSON: a bad \u escape at byte %d`, s.i)
			}
			if utf16.IsSurrogate(r) {
				save := s.i
				if s.i+1 < len(s.b) && s.b[s.i] == '\\' && s.b[s.i+1] == 'u' {
					s.i += 2
					if r2, ok := s.hex4(); ok {
						if d := utf16.DecodeRune(r, r2); d != utf8.RuneError {
							out = utf8.AppendRune(out, d)
							continue
						}
					}
				}
				s.i = save
				r = utf8.RuneError
			}
			out = utf8.AppendRune(out, r)
		default:
			return nil, fmt.Errorf("the body is not valid JSON: a bad escape \\%c at byte %d", e, s.i-1)
		}
	}
	return nil, s.errSyntax(`the end of a string`)
}

func (s *scanner) hex4() (rune, bool) {
	if s.i+4 > len(s.b) {
		return 0, false
	}
	var r rune
	for _, c := range s.b[s.i : s.i+4] {
		r <<= 4
		switch {
		case c >= '0' && c <= '9':
			r |= rune(c - '0')
		case c >= 'a' && c <= 'f':
			r |= rune(c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			r |= rune(c - 'A' + 10)
		default:
			return 0, false
		}
	}
	s.i += 4
	return r, true
}

// literal reads true, false or null.
func (s *scanner) literal() (string, error) {
	s.ws()
	for _, lit := range []string{"true", "false", "null"} {
		if len(s.b)-s.i >= len(lit) && string(s.b[s.i:s.i+len(lit)]) == lit {
			s.i += len(lit)
			return lit, nil
		}
	}
	return "", s.errSyntax("a value")
}

// maxDepth bounds how deeply the arrays and objects of a value the
// decoder passes over may nest. It is a caller's choice of body, so the
// scanner never recurses on it: skip keeps its place in a bit stack of
// this many levels (it must fit in 64 bits).
const maxDepth = model.MaxNesting

// DepthError is a body nested past maxDepth: where it happened and how
// deep the limit is.
type DepthError struct{ At int }

func (e *DepthError) Error() string {
	return fmt.Sprintf("the body nests arrays and objects more than %d levels deep (at byte %d)", maxDepth, e.At)
}

// skip passes over one value of any kind, without recursion: bit d of
// objects says whether the container at depth d is an object.
func (s *scanner) skip() error {
	var objects uint64
	depth := 0
	for {
		// The scanner stands on a value.
		switch s.kind() {
		case kindString:
			if _, err := s.str(); err != nil {
				return err
			}
		case kindNumber:
			if _, err := s.number(); err != nil {
				return err
			}
		case kindNull, kindBool:
			if _, err := s.literal(); err != nil {
				return err
			}
		case kindArray, kindObject:
			if depth == maxDepth {
				return &DepthError{At: s.i}
			}
			open, closer := s.b[s.i], byte(']')
			s.i++
			if open == '{' {
				objects |= 1 << depth
				closer = '}'
			} else {
				objects &^= 1 << depth
			}
			depth++
			if !s.consume(closer) {
				if open == '{' {
					if err := s.key(); err != nil {
						return err
					}
				}
				continue
			}
			depth--
		default:
			return s.errSyntax("a value")
		}
		// A value ended: close what ends with it, or go on to the next
		// element or member.
		for {
			if depth == 0 {
				return nil
			}
			inObject := objects>>(depth-1)&1 == 1
			closer := byte(']')
			if inObject {
				closer = '}'
			}
			if s.consume(closer) {
				depth--
				continue
			}
			if err := s.expect(','); err != nil {
				return err
			}
			if inObject {
				if err := s.key(); err != nil {
					return err
				}
			}
			break
		}
	}
}

// key reads an object's key and its colon.
func (s *scanner) key() error {
	if _, err := s.str(); err != nil {
		return err
	}
	return s.expect(':')
}

// raw returns the text of the next value.
func (s *scanner) raw() ([]byte, error) {
	s.ws()
	start := s.i
	if err := s.skip(); err != nil {
		return nil, err
	}
	return s.b[start:s.i], nil
}

// within says whether sub is part of b's memory (a string read without
// escapes is; one unescaped into the scanner's buffer is not).
func within(b, sub []byte) bool {
	if len(sub) == 0 {
		return true
	}
	lo, p := uintptr(unsafe.Pointer(unsafe.SliceData(b))), uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	return p >= lo && p+uintptr(len(sub)) <= lo+uintptr(len(b))
}

// elements calls each for every element of the array that comes next; at
// each call the scanner stands on the element, which each must consume.
func (s *scanner) elements(each func(i int) error) error {
	if err := s.expect('['); err != nil {
		return err
	}
	if s.consume(']') {
		return nil
	}
	for i := 0; ; i++ {
		if err := each(i); err != nil {
			return err
		}
		if s.consume(']') {
			return nil
		}
		if err := s.expect(','); err != nil {
			return err
		}
	}
}

// fields moves past the object that comes next, noting where the values
// of the keys named start (nil for a key absent; the last, for a key given
// twice): an object's members may come in any order, and are read once
// all are known.
func (s *scanner) fields(names ...string) ([]*scanner, error) {
	at := make([]*scanner, len(names))
	err := s.members(func(key []byte) error {
		for i, n := range names {
			if string(key) == n {
				p := *s
				at[i] = &p
				break
			}
		}
		return s.skip()
	})
	return at, err
}

// stringField reads a string member noted by fields ("" when absent).
func stringField(s *scanner, what string) (string, error) {
	if s == nil {
		return "", nil
	}
	if s.kind() != kindString {
		return "", fmt.Errorf("%s must be a string, got %s", what, s.describe())
	}
	b, err := s.str()
	return string(b), err
}

// members calls each for every key of the object that comes next, the
// scanner standing on the key's value, which each must consume. The key
// may alias the scanner's buffer: copy it to keep it.
func (s *scanner) members(each func(key []byte) error) error {
	if err := s.expect('{'); err != nil {
		return err
	}
	if s.consume('}') {
		return nil
	}
	for {
		key, err := s.str()
		if err != nil {
			return err
		}
		if err := s.expect(':'); err != nil {
			return err
		}
		if err := each(key); err != nil {
			return err
		}
		if s.consume('}') {
			return nil
		}
		if err := s.expect(','); err != nil {
			return err
		}
	}
}

// count is how many elements the array that comes next holds, without
// consuming it.
func (s *scanner) count() (int, error) {
	probe := *s
	if n, ok := probe.countFast(); ok {
		return n, nil
	}
	probe = *s
	n := 0
	err := probe.elements(func(int) error {
		n++
		return probe.skip()
	})
	return n, err
}

// end checks that nothing but white space follows.
func (s *scanner) end() error {
	if s.peek() != 0 {
		return fmt.Errorf("the body is not valid JSON: unexpected data after the top-level object at byte %d", s.i)
	}
	return nil
}

// describe names the next value for an error message, quoting short ones,
// without consuming it.
func (s *scanner) describe() string {
	probe := *s
	switch probe.kind() {
	case kindNull:
		if _, err := probe.literal(); err != nil {
			return "something that is not JSON"
		}
		return "null"
	case kindObject:
		return "an object"
	case kindArray:
		return "an array"
	case kindBool:
		lit, err := probe.literal()
		if err != nil {
			return "something that is not JSON"
		}
		return "boolean " + lit
	case kindString:
		b, err := probe.str()
		if err != nil {
			return "a malformed string"
		}
		if len(b) > 40 {
			return fmt.Sprintf("string %q...", b[:40])
		}
		return fmt.Sprintf("string %q", b)
	case kindNumber:
		b, err := probe.number()
		if err != nil {
			return "a malformed number"
		}
		return "number " + string(b)
	case kindEnd:
		return "the end of the body (the JSON is cut short)"
	}
	return "something that is not JSON"
}

// text views b as a string without copying, for parsing numbers; the
// string must not outlive the call.
func text(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	return unsafe.String(&b[0], len(b))
}

var errNotWhole = errors.New("not a whole number")

// parseInt reads a JSON integer quickly; numbers with a fraction or an
// exponent that are whole (5.0, 1e3) go through the float path.
func parseInt(b []byte) (int64, error) {
	neg := len(b) > 0 && b[0] == '-'
	digits := b
	if neg {
		digits = b[1:]
	}
	if len(digits) == 0 || len(digits) > 18 {
		return parseIntSlow(b)
	}
	var n int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return parseIntSlow(b)
		}
		n = n*10 + int64(c-'0')
	}
	if neg {
		n = -n
	}
	return n, nil
}

func parseIntSlow(b []byte) (int64, error) {
	if n, err := strconv.ParseInt(text(b), 10, 64); err == nil {
		return n, nil
	}
	f, err := strconv.ParseFloat(text(b), 64)
	if err != nil || f != float64(int64(f)) || f < -(1<<63) || f >= 1<<63 {
		return 0, errNotWhole
	}
	return int64(f), nil
}

// pow10 holds the powers of ten a float64 represents exactly.
var pow10 = [...]float64{1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11,
	1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22}

// float reads the next number, rounded correctly to a float of bits (32
// or 64) bits, in one pass over its text: most JSON numbers are short
// decimals that Clinger's exact fast path converts with one float
// operation; the rest go to strconv.
func (s *scanner) float(bits int) (float64, error) {
	s.ws()
	if f, next, ok := quickFloat(s.b, s.i, bits); ok {
		s.i = next
		return f, nil
	}
	start := s.i
	b := s.b
	i := s.i
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	// mant holds the digits read, exactly unless inexact: a digit that
	// did not fit was dropped (its place kept in exp).
	var mant uint64
	exp, inexact := 0, false
	intStart := i
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		if mant <= maxMant {
			mant = mant*10 + uint64(b[i]-'0')
		} else {
			exp++
			inexact = true
		}
	}
	// JSON needs an integer part without leading zeros, and digits after
	// a point.
	simple := i > intStart && (b[intStart] != '0' || i == intStart+1)
	if i < len(b) && b[i] == '.' {
		i++
		fracStart := i
		// Eight digits at a time while they fit: most fractions of the
		// numbers a table holds are that long.
		for i+8 <= len(b) && mant < 1e10 {
			v := binary.LittleEndian.Uint64(b[i:])
			if !eightDigits(v) {
				break
			}
			mant = mant*1e8 + parseEight(v)
			exp -= 8
			i += 8
		}
		for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
			if mant <= maxMant {
				mant = mant*10 + uint64(b[i]-'0')
				exp--
			} else {
				inexact = true
			}
		}
		simple = simple && i > fracStart
	}
	if simple && !inexact && (i == len(b) || !numberByte(b[i])) {
		if f, ok := exactFloat(mant, exp, neg, bits); ok {
			s.i = i
			return f, nil
		}
	}
	s.i = start
	raw, err := s.number()
	if err != nil {
		return 0, err
	}
	f, err := strconv.ParseFloat(text(raw), bits)
	if err != nil {
		return 0, fmt.Errorf("number %s is out of range", raw)
	}
	return f, nil
}

// quickFloat reads the number at b[i:] the way float does, for the
// common form where at least 8 bytes follow each run of digits: up to 8
// integer digits and 23 fractional ones, read eight bytes at a time
// without a loop over digits (every table of floats a warehouse sends is
// such numbers). ok is false, and nothing is read, for anything else:
// float's general path then reads it, or words its mistake.
func quickFloat(b []byte, i, bits int) (f float64, next int, ok bool) {
	neg := i < len(b) && b[i] == '-'
	if neg {
		i++
	}
	if i+8 > len(b) {
		return 0, 0, false
	}
	var mant uint64
	var digits int
	if d := b[i] - '0'; d < 10 && b[i+1] == '.' {
		// One integer digit, as most features are scaled: no run to find.
		mant, digits = uint64(d), 1
		i++
	} else {
		v := binary.LittleEndian.Uint64(b[i:])
		n := digitRun(v)
		// JSON: an integer part, without leading zeros.
		if n == 0 || n == 8 || n > 1 && b[i] == '0' {
			return 0, 0, false
		}
		mant, digits = digitPrefix(v, n), n
		i += n
	}
	exp := 0
	if b[i] == '.' {
		i++
		for k := 0; ; k++ {
			if i+8 > len(b) || k == 3 {
				return 0, 0, false
			}
			v := binary.LittleEndian.Uint64(b[i:])
			n := digitRun(v)
			if n == 0 && k == 0 {
				return 0, 0, false // a point needs digits after it
			}
			mant = mant*pow10u[n] + digitPrefix(v, n)
			digits += n
			exp -= n
			i += n
			// A run of eight is followed by a non-digit more often
			// than by more digits: one byte says so.
			if n < 8 || i < len(b) && b[i]-'0' >= 10 {
				break
			}
		}
	}
	if i >= len(b) {
		return 0, 0, false
	}
	if c := b[i]; c == 'e' || c == 'E' {
		i++
		if i+9 > len(b) {
			return 0, 0, false
		}
		eneg := false
		if c := b[i]; c == '-' || c == '+' {
			eneg = c == '-'
			i++
		}
		v := binary.LittleEndian.Uint64(b[i:])
		n := digitRun(v)
		if n == 0 || n > 3 {
			return 0, 0, false
		}
		e := int(digitPrefix(v, n))
		if eneg {
			e = -e
		}
		exp += e
		i += n
	}
	// 19 digits always fit; the result is exact (Clinger) when the
	// mantissa fits a float64's and the power of ten is exact too.
	if digits > 19 || numberByte(b[i]) {
		return 0, 0, false
	}
	f, ok = exactFloat(mant, exp, neg, bits)
	return f, i, ok
}

// exactFloat is mant×10^exp, negated if neg, rounded to a float of bits
// (32 or 64) bits, when one float64 operation gives it exactly (Clinger:
// the mantissa and the power of ten are exact float64s); ok is false
// otherwise, for strconv to round.
func exactFloat(mant uint64, exp int, neg bool, bits int) (float64, bool) {
	if mant >= 1<<53 || exp < -22 || exp > 22 {
		return 0, false
	}
	f := float64(mant)
	if exp < 0 {
		f /= pow10[-exp]
	} else {
		f *= pow10[exp]
	}
	if neg {
		f = -f
	}
	if bits == 32 {
		// A float64 exactly halfway between two float32s would round
		// twice; strconv rounds the decimal straight to 32 bits.
		if math.Float64bits(f)&(1<<29-1) == 1<<28 {
			return 0, false
		}
		f = float64(float32(f))
	}
	return f, true
}

// floats reads up to len(dst) comma-separated numbers of a row into dst
// as float32s, in one loop over local state, and returns how many it
// read: it stops, standing just after the last number read, at the
// first value the quick path does not take (a string, a null, the row's
// end, a mistake), which the caller then reads the general way.
func (s *scanner) floats(dst []float32) int {
	b, i := s.b, s.i
	for k := range dst {
		at := i
		if k > 0 {
			if at = skipSpace(b, at); at >= len(b) || b[at] != ',' {
				s.i = i
				return k
			}
			at++
		}
		f, next, ok := quickFloat(b, skipSpace(b, at), 32)
		if !ok {
			s.i = i
			return k
		}
		dst[k] = float32(f)
		i = next
	}
	s.i = i
	return len(dst)
}

// pow10u holds the powers of ten digitPrefix's values are scaled by.
var pow10u = [...]uint64{1, 10, 100, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8}

// digitRun is how many of the 8 bytes of v (little-endian: the first byte
// lowest) are ASCII digits before the first that is not. A byte's
// add/subtract carries run only toward later bytes, so the first
// non-digit is always flagged right.
func digitRun(v uint64) int {
	m := ((v + 0x4646464646464646) | (v - 0x3030303030303030)) & 0x8080808080808080
	return bits.TrailingZeros64(m) >> 3
}

// digitPrefix is the number the first n (0..8) bytes of v spell: they are
// moved to the top and the bytes below filled with '0'.
func digitPrefix(v uint64, n int) uint64 {
	sh := uint(8-n) * 8
	return parseEight(v<<sh | 0x3030303030303030>>(64-sh))
}

// maxMant is the largest mantissa another digit can be appended to.
const maxMant = (math.MaxUint64 - 9) / 10

// eightDigits says whether the 8 bytes of v (little-endian) are all
// ASCII digits; parseEight reads them as a number (Lemire's method:
// pairs, then fours, then the eight, in three multiplications).
func eightDigits(v uint64) bool {
	return ((v+0x4646464646464646)|(v-0x3030303030303030))&0x8080808080808080 == 0
}

func parseEight(v uint64) uint64 {
	const mask, mul1, mul2 = 0x000000FF000000FF, 100 + 1000000<<32, 1 + 10000<<32
	v -= 0x3030303030303030
	v = v*10 + v>>8
	return (v&mask*mul1 + v>>16&mask*mul2) >> 32
}

func numberByte(c byte) bool {
	return c >= '0' && c <= '9' || c == '.' || c == 'e' || c == 'E' || c == '+' || c == '-'
}

// countFast is how many elements the array that comes next holds,
// counting commas at its top level; strings are skipped whole, nothing
// else is checked (the decode that follows reads every byte properly).
func (s *scanner) countFast() (int, bool) {
	s.ws()
	b := s.b
	i := s.i
	if i >= len(b) || b[i] != '[' {
		return 0, false
	}
	depth, n, empty := 0, 0, true
	for ; i < len(b); i++ {
		switch c := b[i]; c {
		case '"':
			for i++; i < len(b) && b[i] != '"'; i++ {
				if b[i] == '\\' {
					i++
				}
			}
			empty = false
		case '[', '{':
			depth++
			if depth > 1 {
				empty = false
			}
		case ']', '}':
			depth--
			if depth == 0 {
				if empty {
					return 0, true
				}
				return n + 1, true
			}
		case ',':
			if depth == 1 {
				n++
			}
		case ' ', '\t', '\n', '\r':
		default:
			empty = false
		}
	}
	return 0, false
}
