// Package testenv gives tests the real parts they run against: the ONNX
// Runtime library and the models scripts/models.py generates.
package testenv

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"

	"github.com/modelserve/modelserve/onnxrt"
)

// PythonEnv overrides the interpreter that has python3-onnx.
const PythonEnv = "MODELSERVE_PYTHON"

// Runtime loads ONNX Runtime or fails the test, saying how to get it.
func Runtime(t testing.TB) *onnxrt.Runtime {
	t.Helper()
	rt, err := onnxrt.Load("")
	if err != nil {
		t.Fatalf("ONNX Runtime is needed (make ort fetches it): %v", err)
	}
	return rt
}

// RepoRoot is the folder holding go.mod.
func RepoRoot(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("go.mod not found above the test's folder")
		}
		dir = parent
	}
}

// Model returns the path of a model scripts/models.py generates (iris,
// mlp, encoder, strings, vectors, image, types, fixed, sequence, fragile).
// Models are generated once into a cache keyed by the generator's content.
func Model(t testing.TB, name string) string {
	t.Helper()
	dir := ModelDir(t)
	path := filepath.Join(dir, name+".onnx")
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("model %q: %v", name, err)
	}
	return path
}

// ModelDir generates (once) every test model and returns their folder.
// Concurrent callers may each generate; the first rename wins and the rest
// find the same bytes there.
func ModelDir(t testing.TB) string {
	t.Helper()
	root := RepoRoot(t)
	script := filepath.Join(root, "scripts", "models.py")
	h := sha256.New()
	for _, f := range []string{script, filepath.Join(root, "examples", "iris", "iris.csv")} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		h.Write(b)
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		cache = os.TempDir()
	}
	dir := filepath.Join(cache, "modelserve", "testmodels", hex.EncodeToString(h.Sum(nil))[:16])
	if _, err := os.Stat(filepath.Join(dir, "done")); err == nil {
		return dir
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), "gen-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(tmp)
	python := os.Getenv(PythonEnv)
	if python == "" {
		python = "/usr/bin/python3"
	}
	out, err := exec.Command(python, script, tmp).CombinedOutput()
	if err != nil {
		t.Fatalf("generating test models needs Debian's python3-onnx and python3-numpy (make deps): %v\n%s", err, out)
	}
	if err := os.WriteFile(filepath.Join(tmp, "done"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Another test binary may have won the race; its models are the same.
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "done")); serr != nil {
			t.Fatal(fmt.Errorf("caching test models: %w", err))
		}
	}
	return dir
}

// SyncBuffer collects output (a log, a process's stderr) safely from
// several goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
