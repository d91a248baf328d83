package onnxrt

import (
	"context"
	"debug/elf"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// CUDAPathEnv names a list of folders (like PATH) searched first for the
// CUDA and cuDNN libraries the providers need.
const CUDAPathEnv = "MODELSERVE_CUDA_PATH"

// Dependency is a shared library a provider needs, and where it was found
// ("" when nowhere).
type Dependency struct {
	Name string
	Path string
	// Source says where Path came from: "LD_LIBRARY_PATH", "the loader's
	// cache", "a Python wheel (nvidia/cu13)", ...
	Source string
	// Preload is set when the dynamic loader would not find Path by
	// itself (a Python wheel, MODELSERVE_CUDA_PATH, a CUDA folder outside
	// its cache): modelserve then loads it before the provider.
	Preload bool
	// OnDemand marks a library the provider opens when first needed
	// rather than at load.
	OnDemand bool
}

// libDir is a folder searched for libraries, and how it came to be searched.
type libDir struct {
	path, source string
	// loaderSees: the dynamic loader searches this folder by itself.
	loaderSees bool
}

// onDemand are libraries the CUDA provider opens itself, when an operator
// needs them, so they are not in its ELF dependencies. Their order is the
// order they are preloaded in, after the others.
var onDemand = map[string][]string{"cuda": {"libcudnn.so.9"}}

// ProviderDependencies lists what the provider library in dir ("cuda",
// "tensorrt") needs beyond the C library, each looked up where the dynamic
// loader would (LD_LIBRARY_PATH, the provider's folder, the loader's
// cache), then in MODELSERVE_CUDA_PATH, the usual CUDA folders, and the
// NVIDIA libraries Python's nvidia-* wheels install (as PyTorch does).
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
	s := newSearch(dir)
	var deps []Dependency
	for _, lib := range libs {
		if systemLibrary(lib) || strings.HasPrefix(lib, "libonnxruntime") {
			continue
		}
		deps = append(deps, s.find(lib))
	}
	for _, lib := range onDemand[provider] {
		d := s.find(lib)
		d.OnDemand = true
		deps = append(deps, d)
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

// search finds libraries in the loader's folders first, then in the
// others; the Python wheels are looked for only when needed, since that
// may ask a Python interpreter where its packages are.
type search struct {
	dirs   []libDir
	wheels []libDir
	looked bool
}

func newSearch(own string) *search {
	var dirs []libDir
	for _, d := range filepath.SplitList(os.Getenv("LD_LIBRARY_PATH")) {
		if d != "" {
			dirs = append(dirs, libDir{d, "LD_LIBRARY_PATH", true})
		}
	}
	dirs = append(dirs, libDir{own, "beside the provider", true})
	if out, err := exec.Command("ldconfig", "-p").Output(); err == nil {
		// Lines read "\tlibcudart.so.13 (libc6,x86-64) => /usr/lib/.../libcudart.so.13".
		for _, line := range strings.Split(string(out), "\n") {
			if _, path, ok := strings.Cut(line, "=> "); ok {
				dirs = append(dirs, libDir{filepath.Dir(strings.TrimSpace(path)), "the loader's cache", true})
			}
		}
	}
	for _, d := range []string{"/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64"} {
		dirs = append(dirs, libDir{d, "a system folder", true})
	}
	for _, d := range filepath.SplitList(os.Getenv(CUDAPathEnv)) {
		if d != "" {
			dirs = append(dirs, libDir{d, CUDAPathEnv, false})
		}
	}
	for _, d := range []string{"/usr/local/cuda/lib64", "/usr/local/nvidia/lib64", "/usr/local/nvidia/lib"} {
		dirs = append(dirs, libDir{d, "a CUDA folder", false})
	}
	return &search{dirs: dirs}
}

func (s *search) find(name string) Dependency {
	if d, ok := lookIn(name, s.dirs); ok {
		return d
	}
	if !s.looked {
		s.wheels, s.looked = wheelDirs(), true
	}
	d, _ := lookIn(name, s.wheels)
	return d
}

func lookIn(name string, dirs []libDir) (Dependency, bool) {
	for _, d := range dirs {
		p := filepath.Join(d.path, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return Dependency{Name: name, Path: p, Source: d.source, Preload: !d.loaderSees}, true
		}
	}
	return Dependency{Name: name}, false
}

// wheelDirs lists the lib folders of NVIDIA's Python wheels
// (site-packages/nvidia/*/lib: nvidia/cublas/lib for CUDA 12,
// nvidia/cu13/lib for CUDA 13, nvidia/cudnn/lib) in every Python
// environment found: the active virtual or conda environment, the
// python3 on PATH, and the usual install folders.
func wheelDirs() []libDir {
	var sites []string
	for _, env := range []string{"VIRTUAL_ENV", "CONDA_PREFIX"} {
		if p := os.Getenv(env); p != "" {
			sites = append(sites, globs(filepath.Join(p, "lib", "python3*", "site-packages"))...)
		}
	}
	sites = append(sites, pythonPath()...)
	home, _ := os.UserHomeDir()
	for _, pattern := range []string{
		"/usr/local/lib/python3*/dist-packages", "/usr/local/lib/python3*/site-packages",
		"/usr/lib/python3*/dist-packages", "/usr/lib/python3/dist-packages",
		"/opt/conda/lib/python3*/site-packages", "/opt/*/lib/python3*/site-packages",
		"/opt/*/.venv/lib/python3*/site-packages", "/opt/*/venv/lib/python3*/site-packages",
		filepath.Join(home, ".local", "lib", "python3*", "site-packages"),
	} {
		sites = append(sites, globs(pattern)...)
	}
	var dirs []libDir
	seen := map[string]bool{}
	for _, site := range sites {
		for _, lib := range globs(filepath.Join(site, "nvidia", "*", "lib")) {
			real, err := filepath.EvalSymlinks(lib)
			if err != nil || seen[real] {
				continue
			}
			seen[real] = true
			pkg := filepath.Base(filepath.Dir(lib))
			dirs = append(dirs, libDir{lib, "a Python wheel (nvidia/" + pkg + ")", false})
		}
	}
	return dirs
}

func globs(pattern string) []string {
	m, _ := filepath.Glob(pattern)
	slices.Sort(m)
	return m
}

// pythonPath asks the python3 on PATH for its package folders, within
// two seconds; none if there is no python3.
func pythonPath() []string {
	py, err := exec.LookPath("python3")
	if err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, py, "-c", "import sys; print('\\n'.join(sys.path))").Output()
	if err != nil {
		return nil
	}
	var dirs []string
	for _, line := range strings.Split(string(out), "\n") {
		if line = strings.TrimSpace(line); filepath.IsAbs(line) {
			dirs = append(dirs, line)
		}
	}
	return dirs
}
