package batchjob

import (
	"fmt"
	"path/filepath"
	"strings"
)

// Format is a file format for rows.
type Format string

// The formats predict-batch reads and writes.
const (
	CSV       Format = "csv"
	JSONLines Format = "jsonl"
	Parquet   Format = "parquet"
)

// ParseFormat reads a format's name.
func ParseFormat(s string) (Format, error) {
	switch f := Format(strings.ToLower(s)); f {
	case CSV, JSONLines, Parquet:
		return f, nil
	case "ndjson", "jsonlines":
		return JSONLines, nil
	}
	return "", fmt.Errorf("unknown format %q: use csv, jsonl or parquet", s)
}

// FormatOf tells a file's format by its extension, or "" for none known.
func FormatOf(path string) Format {
	switch strings.ToLower(filepath.Ext(path)) {
	case ".csv":
		return CSV
	case ".jsonl", ".ndjson":
		return JSONLines
	case ".parquet", ".pq":
		return Parquet
	}
	return ""
}

func (f Format) ext() string { return string(f) }
