// Package bytesize reads and writes sizes in bytes as people write them:
// 1048576, 512Mi, 2GiB, 1.5G.
package bytesize

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// units: K, M, G, T are powers of 1000; Ki, Mi, Gi, Ti (and KiB...) powers
// of 1024. Longer suffixes come first, so "Mi" is not read as "M".
var units = []struct {
	suffix string
	factor float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1e3}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	{"B", 1},
}

// Parse reads a size with or without a unit.
func Parse(s string) (int64, error) {
	in := s
	s = strings.TrimSpace(s)
	factor := 1.0
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, factor = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.factor
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || !(v >= 0) || math.IsInf(v*factor, 0) || v*factor >= math.MaxInt64 {
		return 0, fmt.Errorf("%q is not a size like 512Mi or 2GiB", in)
	}
	return int64(v * factor), nil
}

// Format writes n bytes for people: 512 B, 1.5 KiB, 2.0 GiB.
func Format(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
