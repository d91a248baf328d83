package onnxrt

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// realLibrary is a shared library every Debian machine has, standing in
// for a CUDA library in a fake wheel: what matters is that it loads.
const realLibrary = "/lib/x86_64-linux-gnu/libz.so.1"

// fakeVenv lays out a virtual environment whose nvidia/cu13 wheel holds
// libcudart.so.13 (a copy of realLibrary) and returns its root.
func fakeVenv(t *testing.T) (root, lib string) {
	t.Helper()
	if _, err := os.Stat(realLibrary); err != nil {
		t.Fatalf("%s is missing: every Debian system has it (zlib1g)", realLibrary)
	}
	root = t.TempDir()
	dir := filepath.Join(root, "lib", "python3.12", "site-packages", "nvidia", "cu13", "lib")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(realLibrary)
	if err != nil {
		t.Fatal(err)
	}
	lib = filepath.Join(dir, "libcudart.so.13")
	if err := os.WriteFile(lib, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return root, lib
}

// TestProviderDependencies_findsCUDAInPythonWheels: the GPU build's CUDA
// provider needs libcudart.so.13; with it only in a virtual
// environment's nvidia wheel, it is found there, said so, and marked
// for loading before the provider.
func TestProviderDependencies_findsCUDAInPythonWheels(t *testing.T) {
	dir := GPULibraryDir()
	if _, err := os.Stat(filepath.Join(dir, "libonnxruntime_providers_cuda.so")); err != nil {
		t.Fatalf("the GPU build of ONNX Runtime is missing; make test fetches it (make ort-gpu): %v", err)
	}
	venv, lib := fakeVenv(t)
	t.Setenv("VIRTUAL_ENV", venv)
	t.Setenv("LD_LIBRARY_PATH", "")
	t.Setenv(CUDAPathEnv, "")
	deps, err := ProviderDependencies(dir, "cuda")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range deps {
		names = append(names, d.Name)
		switch d.Name {
		case "libcudart.so.13":
			if d.Path != lib || !d.Preload || !strings.Contains(d.Source, "Python wheel (nvidia/cu13)") {
				t.Errorf("libcudart.so.13: got %+v, want %s from the wheel, preloaded", d, lib)
			}
		case "libcudnn.so.9":
			if !d.OnDemand {
				t.Errorf("libcudnn.so.9 should be marked on demand: %+v", d)
			}
		}
	}
	for _, want := range []string{"libcublasLt.so.13", "libcudart.so.13", "libcudnn.so.9"} {
		if !strings.Contains(strings.Join(names, " "), want) {
			t.Errorf("dependencies %v lack %s", names, want)
		}
	}

	// The same folder named in MODELSERVE_CUDA_PATH is found before the wheels.
	t.Setenv(CUDAPathEnv, filepath.Dir(lib))
	deps, err = ProviderDependencies(dir, "cuda")
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range deps {
		if d.Name == "libcudart.so.13" && (d.Source != CUDAPathEnv || !d.Preload) {
			t.Errorf("with %s set: got %+v", CUDAPathEnv, d)
		}
	}
}

// TestPreload_loadsWhatItCanAndNamesWhatItCannot: a real library loads;
// a file that is no library fails with its path in the error.
func TestPreload_loadsWhatItCanAndNamesWhatItCannot(t *testing.T) {
	_, lib := fakeVenv(t)
	if err := preload([]string{lib}); err != nil {
		t.Fatalf("preloading %s: %v", lib, err)
	}
	junk := filepath.Join(t.TempDir(), "libcublas.so.13")
	if err := os.WriteFile(junk, []byte("not a library"), 0o644); err != nil {
		t.Fatal(err)
	}
	err := preload([]string{lib, junk})
	if err == nil || !strings.Contains(err.Error(), junk) {
		t.Fatalf("preloading a junk file: got %v, want an error naming %s", err, junk)
	}
}
