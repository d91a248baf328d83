package atomicfile

import (
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
)

func TestWrite_wholeOrNotAtAll(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "f")
	if err := os.WriteFile(path, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	failed := errors.New("disk full")
	tests := []struct {
		name  string
		write func(io.Writer) error
		want  string
		err   error
	}{
		{"a failed write leaves the old content", func(w io.Writer) error {
			io.WriteString(w, "half")
			return failed
		}, "old", failed},
		{"a whole write replaces it", func(w io.Writer) error {
			_, err := io.WriteString(w, "new")
			return err
		}, "new", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Write(path, 0o644, tt.write)
			if !errors.Is(err, tt.err) {
				t.Fatalf("error %v, want %v", err, tt.err)
			}
			got, _ := os.ReadFile(path)
			if string(got) != tt.want {
				t.Errorf("content %q, want %q", got, tt.want)
			}
			entries, _ := os.ReadDir(dir)
			if len(entries) != 1 {
				t.Errorf("%d files in the folder: a temporary file was left", len(entries))
			}
		})
	}
	if info, _ := os.Stat(path); info.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", info.Mode().Perm())
	}
}
