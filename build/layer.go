package build

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"path"
	"sort"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// epoch dates every file, layer and config: the same inputs give the same
// bytes on any machine, at any time.
var epoch = time.Unix(0, 0).UTC()

// File is one file a layer holds: copied from Source on disk, or Data; or
// a directory, when its mode is not the default 0755 (/tmp's 1777).
type File struct {
	// Path in the image, absolute.
	Path string
	// Mode holds the permission bits, setuid, setgid and sticky included.
	Mode int64
	// Source is a file on disk whose contents to take, or "" to use Data.
	Source string
	Data   []byte
	Dir    bool
}

func (f File) size() (int64, error) {
	if f.Dir || f.Source == "" {
		return int64(len(f.Data)), nil
	}
	info, err := os.Stat(f.Source)
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

func (f File) open() (io.ReadCloser, error) {
	if f.Source == "" {
		return io.NopCloser(bytes.NewReader(f.Data)), nil
	}
	return os.Open(f.Source)
}

// Layer makes a reproducible layer of files and their parent directories:
// sorted by path, owned by root, dated at the epoch, gzip at a fixed
// level, OCI media type.
func Layer(files []File) (v1.Layer, error) {
	sorted := append([]File(nil), files...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].Path < sorted[j].Path })
	for i, f := range sorted {
		if !path.IsAbs(f.Path) || path.Clean(f.Path) != f.Path {
			return nil, fmt.Errorf("layer path %q must be absolute and clean", f.Path)
		}
		if i > 0 && sorted[i-1].Path == f.Path {
			return nil, fmt.Errorf("layer path %q given twice", f.Path)
		}
		if _, err := f.size(); err != nil {
			return nil, fmt.Errorf("layer file %s: %w", f.Path, err)
		}
	}
	opener := func() (io.ReadCloser, error) {
		pr, pw := io.Pipe()
		go func() { pw.CloseWithError(writeTar(pw, sorted)) }()
		return pr, nil
	}
	return tarball.LayerFromOpener(opener,
		tarball.WithCompressionLevel(gzip.BestSpeed),
		tarball.WithMediaType(types.OCILayer))
}

func writeTar(w io.Writer, files []File) error {
	tw := tar.NewWriter(w)
	dirs := map[string]bool{}
	var mkdirs func(dir string, mode int64) error
	mkdirs = func(dir string, mode int64) error {
		if dir == "/" || dirs[dir] {
			return nil
		}
		if err := mkdirs(path.Dir(dir), 0o755); err != nil {
			return err
		}
		dirs[dir] = true
		return tw.WriteHeader(&tar.Header{
			Typeflag: tar.TypeDir, Name: dir[1:] + "/", Mode: mode, ModTime: epoch, Format: tar.FormatPAX,
		})
	}
	for _, f := range files {
		if f.Dir {
			// Sorted by path, a directory comes before what it holds, so
			// its own mode wins over the default.
			if err := mkdirs(f.Path, f.Mode); err != nil {
				return err
			}
			continue
		}
		if err := mkdirs(path.Dir(f.Path), 0o755); err != nil {
			return err
		}
		size, err := f.size()
		if err != nil {
			return err
		}
		hdr := &tar.Header{Typeflag: tar.TypeReg, Name: f.Path[1:], Mode: f.Mode, Size: size, ModTime: epoch, Format: tar.FormatPAX}
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		rc, err := f.open()
		if err != nil {
			return err
		}
		n, err := io.Copy(tw, rc)
		rc.Close()
		if err != nil {
			return fmt.Errorf("adding %s: %w", f.Path, err)
		}
		if n != size {
			return fmt.Errorf("adding %s: it changed size while being read", f.Path)
		}
	}
	return tw.Close()
}
