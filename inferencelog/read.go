package inferencelog

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/modelserve/modelserve/internal/atomicfile"
	"github.com/modelserve/modelserve/internal/parquetguard"
)

// ManifestName is the manifest's file name in a log's folder.
const ManifestName = "manifest.json"

// maxManifestBytes bounds the manifest read (about 200 bytes a file).
const maxManifestBytes = 64 << 20

// Manifest lists a log's finished files, oldest first: each is whole (its
// footer written and synced) before it is listed.
type Manifest struct {
	Files []FileInfo `json:"files"`
}

// FileInfo is one finished file.
type FileInfo struct {
	File     string    `json:"file"`
	Rows     int64     `json:"rows"`
	Requests int64     `json:"requests"`
	Bytes    int64     `json:"bytes"`
	First    time.Time `json:"first"`
	Last     time.Time `json:"last"`
	SHA256   string    `json:"sha256"`
}

// Seq is the file's sequence number, as its name gives it.
func (f FileInfo) Seq() string {
	name := strings.TrimSuffix(f.File, ".parquet")
	if i := strings.LastIndexByte(name, '-'); i >= 0 {
		return name[i+1:]
	}
	return ""
}

// ReadManifest reads the manifest in dir; a folder without one has none
// yet.
func ReadManifest(dir string) (Manifest, error) {
	var m Manifest
	f, err := os.Open(filepath.Join(dir, ManifestName))
	if errors.Is(err, os.ErrNotExist) {
		return m, nil
	}
	if err != nil {
		return m, fmt.Errorf("inference log: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxManifestBytes+1))
	if err != nil {
		return m, fmt.Errorf("inference log: %w", err)
	}
	if len(b) > maxManifestBytes {
		return m, fmt.Errorf("inference log: %s is over %d bytes", ManifestName, maxManifestBytes)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("inference log: %s is not a manifest: %w", filepath.Join(dir, ManifestName), err)
	}
	for _, fi := range m.Files {
		if fi.File != filepath.Base(fi.File) || !strings.HasSuffix(fi.File, ".parquet") || strings.HasPrefix(fi.File, ".") {
			return m, fmt.Errorf("inference log: the manifest names %q, not a file of the log's folder", fi.File)
		}
	}
	return m, nil
}

func writeManifest(dir string, m Manifest) error {
	return atomicfile.Write(filepath.Join(dir, ManifestName), 0o600, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		return enc.Encode(m)
	})
}

// Each calls fn with every row of the files the manifest in dir lists,
// in order; it stops at fn's first error, or ctx's.
func Each(ctx context.Context, dir string, fn func(Row) error) error {
	m, err := ReadManifest(dir)
	if err != nil {
		return err
	}
	for _, fi := range m.Files {
		if err := eachInFile(ctx, filepath.Join(dir, fi.File), fn); err != nil {
			return err
		}
	}
	return nil
}

// eachInFile reads one file's rows, its structure checked first.
func eachInFile(ctx context.Context, path string, fn func(Row) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("inference log: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("inference log: %w", err)
	}
	if err := parquetguard.Check(f, st.Size()); err != nil {
		return fmt.Errorf("inference log: %s: %w", path, err)
	}
	r := parquet.NewGenericReader[Row](f)
	defer r.Close()
	rows := make([]Row, 256)
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		clear(rows) // fn may keep a row: its bytes are never reused
		n, err := r.Read(rows)
		for _, row := range rows[:n] {
			if ferr := fn(row); ferr != nil {
				return ferr
			}
		}
		if errors.Is(err, io.EOF) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("inference log: %s: %w", path, err)
		}
	}
}
