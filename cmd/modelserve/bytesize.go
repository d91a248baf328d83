package main

import (
	"fmt"
	"strconv"
	"strings"
)

// byteSize is a flag holding a number of bytes written with or without a
// unit: 1048576, 512Mi, 2GiB, 1.5G (K, M, G, T are powers of 1000; Ki, Mi,
// Gi, Ti and KiB... powers of 1024).
type byteSize int64

var byteUnits = []struct {
	suffix string
	factor float64
}{
	{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
	{"Ki", 1 << 10}, {"Mi", 1 << 20}, {"Gi", 1 << 30}, {"Ti", 1 << 40},
	{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12},
	{"K", 1e3}, {"k", 1e3}, {"M", 1e6}, {"G", 1e9}, {"T", 1e12},
	{"B", 1},
}

func parseByteSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	factor := 1.0
	for _, u := range byteUnits {
		if strings.HasSuffix(s, u.suffix) {
			s, factor = strings.TrimSpace(strings.TrimSuffix(s, u.suffix)), u.factor
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a size like 512Mi or 2GiB", s)
	}
	return int64(v * factor), nil
}

func (b *byteSize) Set(s string) error {
	v, err := parseByteSize(s)
	*b = byteSize(v)
	return err
}

func (b *byteSize) String() string {
	if *b == 0 {
		return "0"
	}
	return humanBytes(int64(*b))
}

func (b *byteSize) Type() string { return "bytes" }
