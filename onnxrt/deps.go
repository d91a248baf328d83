package onnxrt

import (
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Dependency is a shared library a provider needs, and where the loader
// would find it ("" when it would not).
type Dependency struct {
	Name string
	Path string
	// OnDemand marks a library the provider opens when first needed
	// rather than at load.
	OnDemand bool
}

// onDemand are libraries the CUDA provider opens itself, when an operator
// needs them, so they are not in its ELF dependencies.
var onDemand = map[string][]string{"cuda": {"libcudnn.so.9"}}

// ProviderDependencies lists what the provider library in dir ("cuda",
// "tensorrt") needs beyond the C library, each looked up the way the
// dynamic loader would: LD_LIBRARY_PATH, the provider's own folder, the
// loader's cache, the usual CUDA folders.
func ProviderDependencies(dir, provider string) ([]Dependency, error) {
	path := filepath.Join(dir, "libonnxruntime_providers_"+provider+".so")
	f, err := elf.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", path, err)
	}
	defer f.Close()
	libs, err := f.ImportedLibraries()
	if err != nil {
		return nil, fmt.Errorf("reading %s's dependencies: %w", path, err)
	}
	search := searchDirs(dir)
	var deps []Dependency
	for _, lib := range libs {
		if systemLibrary(lib) {
			continue
		}
		deps = append(deps, Dependency{Name: lib, Path: findLibrary(lib, search)})
	}
	for _, lib := range onDemand[provider] {
		deps = append(deps, Dependency{Name: lib, Path: findLibrary(lib, search), OnDemand: true})
	}
	return deps, nil
}

// systemLibrary: glibc and the C++ runtime, which every base has.
func systemLibrary(name string) bool {
	for _, p := range []string{"libc.so", "libm.so", "libdl.so", "librt.so", "libpthread.so", "ld-linux", "libstdc++.so", "libgcc_s.so"} {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

func searchDirs(own string) []string {
	var dirs []string
	for _, d := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
		if d != "" {
			dirs = append(dirs, d)
		}
	}
	dirs = append(dirs, own)
	if out, err := exec.Command("ldconfig", "-p").Output(); err == nil {
		// Lines read "\tlibcudart.so.13 (libc6,x86-64) => /usr/lib/.../libcudart.so.13".
		for _, line := range strings.Split(string(out), "\n") {
			if _, path, ok := strings.Cut(line, "=> "); ok {
				dirs = append(dirs, filepath.Dir(strings.TrimSpace(path)))
			}
		}
	}
	return append(dirs, "/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/local/cuda/lib64",
		"/usr/local/nvidia/lib64", "/usr/lib64")
}

func findLibrary(name string, dirs []string) string {
	for _, d := range dirs {
		p := filepath.Join(d, name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return ""
}
