package onnxrt

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	ort "github.com/yalue/onnxruntime_go"
)

// PinnedVersion is the ONNX Runtime release scripts/fetch-onnxruntime.sh
// installs; keep the two in step.
const PinnedVersion = "1.30.0"

// PinnedGPUVersion is the ONNX Runtime release whose CUDA provider libraries
// scripts/fetch-onnxruntime.sh --gpu installs, core library included.
const PinnedGPUVersion = "1.29.0"

// LibraryEnv names the environment variable that points at a
// libonnxruntime.so.1 the user already has.
const LibraryEnv = "MODELSERVE_ORT_LIB"

const libraryName = "libonnxruntime.so.1"

// TelemetryEnv is ONNX Runtime's own switch for its telemetry. Its Linux
// builds start an uploader in every process that loads them (it writes
// /tmp/mat-debug-PID.log, runs `sh -c "blkid; hostname"`, and crashes where
// there is no /bin/sh); a server must not phone home, so modelserve turns
// it off unless the user set the variable.
const TelemetryEnv = "ORT_DISABLE_TELEMETRY"

// Runtime is the process's ONNX Runtime, loaded from one shared library.
type Runtime struct {
	LibraryPath string
	Version     string

	// prepared holds, per provider, what PrepareProvider found and loaded.
	prepMu   sync.Mutex
	prepared map[string]preparation
}

// ORT keeps one environment per process inside onnxruntime_go, so loading is
// guarded process-wide: this mirrors the C library's state, nothing more.
var (
	loadMu sync.Mutex
	loaded *Runtime
)

// Load initializes ONNX Runtime from path, or, when path is empty, from the
// first library LibraryCandidates finds. Loading again returns the runtime
// already loaded; asking for a different library then is an error.
func Load(path string) (*Runtime, error) {
	loadMu.Lock()
	defer loadMu.Unlock()
	if path == "" {
		found, err := FindLibrary()
		if err != nil {
			return nil, err
		}
		path = found
	}
	if loaded != nil {
		if loaded.LibraryPath != path {
			return nil, fmt.Errorf("ONNX Runtime is already loaded from %s; cannot load %s as well", loaded.LibraryPath, path)
		}
		return loaded, nil
	}
	if _, set := os.LookupEnv(TelemetryEnv); !set {
		// The library reads it when the environment is created, below.
		if err := os.Setenv(TelemetryEnv, "1"); err != nil {
			return nil, fmt.Errorf("turning ONNX Runtime's telemetry off: %w", err)
		}
	}
	ort.SetSharedLibraryPath(path)
	// ORT would print each failed run to stderr; modelserve reports those
	// errors itself, with the request they belong to.
	if err := ort.InitializeEnvironment(ort.WithLogLevelFatal()); err != nil {
		return nil, fmt.Errorf("loading ONNX Runtime from %s: %w", path, err)
	}
	loaded = &Runtime{LibraryPath: path, Version: ort.GetVersion()}
	return loaded, nil
}

// ProviderLibrary is where ONNX Runtime looks for an execution provider's
// library ("cuda", "tensorrt"): beside its own. ok reports that it is there.
func (rt *Runtime) ProviderLibrary(provider string) (path string, ok bool) {
	path = filepath.Join(filepath.Dir(rt.LibraryPath), "libonnxruntime_providers_"+provider+".so")
	_, err := os.Stat(path)
	return path, err == nil
}

// LibraryCandidates lists, in order, where modelserve looks for the library:
// the environment variable, the cache scripts/fetch-onnxruntime.sh fills,
// and beside the executable (how images lay it out).
func LibraryCandidates() []string {
	var c []string
	if p := os.Getenv(LibraryEnv); p != "" {
		c = append(c, p)
	}
	if dir := cacheDir(); dir != "" {
		c = append(c, filepath.Join(dir, "onnxruntime", PinnedVersion, libraryName))
	}
	if exe, err := os.Executable(); err == nil {
		dir := filepath.Dir(exe)
		c = append(c, filepath.Join(dir, libraryName), filepath.Join(dir, "..", "lib", libraryName))
	}
	return c
}

// FindLibrary returns the first candidate that exists. When the variable is
// set, it alone counts: a wrong path there is an error, not a fallback.
func FindLibrary() (string, error) {
	if p := os.Getenv(LibraryEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s=%s: %w", LibraryEnv, p, err)
		}
		return p, nil
	}
	candidates := LibraryCandidates()
	for _, p := range candidates {
		if _, err := os.Stat(p); err == nil {
			return filepath.Clean(p), nil
		}
	}
	return "", fmt.Errorf("ONNX Runtime %s not found (looked in %s); run scripts/fetch-onnxruntime.sh (make ort), or set %s to your %s",
		PinnedVersion, strings.Join(candidates, ", "), LibraryEnv, libraryName)
}

// GPULibraryDir is where scripts/fetch-onnxruntime.sh --gpu puts the core
// library and the CUDA and TensorRT provider libraries.
func GPULibraryDir() string {
	return filepath.Join(cacheDir(), "onnxruntime-gpu", PinnedGPUVersion)
}

// cacheDir follows scripts/fetch-onnxruntime.sh: MODELSERVE_CACHE, else
// XDG_CACHE_HOME/modelserve, else ~/.cache/modelserve.
func cacheDir() string {
	if d := os.Getenv("MODELSERVE_CACHE"); d != "" {
		return d
	}
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "modelserve")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".cache", "modelserve")
}
