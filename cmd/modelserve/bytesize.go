package main

import "github.com/modelserve/modelserve/internal/bytesize"

// byteSize is a flag holding a number of bytes written with or without a
// unit: 1048576, 512Mi, 2GiB, 1.5G (K, M, G, T are powers of 1000; Ki, Mi,
// Gi, Ti and KiB... powers of 1024).
type byteSize int64

func (b *byteSize) Set(s string) error {
	v, err := bytesize.Parse(s)
	*b = byteSize(v)
	return err
}

func (b *byteSize) String() string {
	if *b == 0 {
		return "0"
	}
	return bytesize.Format(int64(*b))
}

func (b *byteSize) Type() string { return "bytes" }
