package main

import "testing"

func TestParseByteSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1048576", 1 << 20, true},
		{"512Mi", 512 << 20, true},
		{"2GiB", 2 << 30, true},
		{"1.5G", 1_500_000_000, true},
		{"64k", 64_000, true},
		{"10 MB", 10_000_000, true},
		{"", 0, false},
		{"-1Gi", 0, false},
		{"lots", 0, false},
	}
	for _, tt := range tests {
		got, err := parseByteSize(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("parseByteSize(%q) = %d, %v", tt.in, got, err)
		}
	}
}
