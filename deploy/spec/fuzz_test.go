package spec

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzParse takes whole spec files: every one is parsed, or refused with
// the problems that have a line, without a panic.
func FuzzParse(f *testing.F) {
	f.Add([]byte(ok))
	f.Add([]byte(aliasBomb(3) + ok))
	seeds, _ := filepath.Glob(filepath.Join("testdata", "seeds", "*.yaml"))
	for _, p := range seeds {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := Parse("fuzz.yaml", data)
		if err == nil && (p == nil || p.Spec == nil || len(p.Spec.Containers) == 0) {
			t.Fatalf("a spec without containers was accepted: %+v", p)
		}
	})
}

// FuzzParseQuantity takes quantities as a spec writes them (2Gi, 0.5,
// 500m): a parsed one is non-negative and prints as it was written.
func FuzzParseQuantity(f *testing.F) {
	for _, s := range []string{"4096", "4Ki", "48Gi", "0.5", "500m", "1.5Gi", "10000000000G", "0.0001", ""} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		q, err := ParseQuantity(s)
		if err != nil {
			return
		}
		if q.Milli() < 0 || q.String() != strings.TrimSpace(s) {
			t.Fatalf("ParseQuantity(%q) = %d milli, %q", s, q.Milli(), q.String())
		}
		if again, err := ParseQuantity(q.String()); err != nil || again.Cmp(q) != 0 {
			t.Fatalf("%q does not parse back: %v", q.String(), err)
		}
	})
}
