package onnxrt

/*
#cgo LDFLAGS: -ldl
#include <dlfcn.h>
#include <stdlib.h>

static void *modelserve_dlopen(const char *path, char **err) {
	void *h = dlopen(path, RTLD_NOW | RTLD_GLOBAL);
	if (h == NULL) {
		*err = dlerror();
	}
	return h;
}
*/
import "C"

import (
	"errors"
	"fmt"
	"path/filepath"
	"unsafe"
)

// PrepareProvider loads, once per process and provider, the libraries the
// provider needs that the dynamic loader would not find by itself (CUDA
// and cuDNN from Python wheels, MODELSERVE_CUDA_PATH, CUDA folders
// outside the loader's cache). A library already loaded under a soname
// satisfies the provider's need for it, which is how Python's frameworks
// use the same wheels. It returns what was found, loaded or not.
func (rt *Runtime) PrepareProvider(provider string) ([]Dependency, error) {
	rt.prepMu.Lock()
	defer rt.prepMu.Unlock()
	if p, ok := rt.prepared[provider]; ok {
		return p.deps, p.err
	}
	deps, err := rt.prepare(provider)
	if rt.prepared == nil {
		rt.prepared = map[string]preparation{}
	}
	rt.prepared[provider] = preparation{deps, err}
	return deps, err
}

type preparation struct {
	deps []Dependency
	err  error
}

func (rt *Runtime) prepare(provider string) ([]Dependency, error) {
	if _, ok := rt.ProviderLibrary(provider); !ok {
		return nil, nil // the provider's absence is reported when it is appended
	}
	deps, err := ProviderDependencies(filepath.Dir(rt.LibraryPath), provider)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, d := range deps {
		if d.Preload {
			paths = append(paths, d.Path)
		}
	}
	return deps, preload(paths)
}

// preload opens each library globally. A library whose own needs are
// among the others may fail until they are loaded, so it goes round
// until a pass loads nothing more.
func preload(paths []string) error {
	pending := paths
	for len(pending) > 0 {
		var failed []string
		var errs []error
		for _, p := range pending {
			if err := dlopen(p); err != nil {
				failed = append(failed, p)
				errs = append(errs, err)
			}
		}
		if len(failed) == len(pending) {
			return fmt.Errorf("loading CUDA libraries found outside the loader's path: %w", errors.Join(errs...))
		}
		pending = failed
	}
	return nil
}

// dlopen loads a library for the life of the process.
func dlopen(path string) error {
	cpath := C.CString(path)
	defer C.free(unsafe.Pointer(cpath))
	var cerr *C.char
	if h := C.modelserve_dlopen(cpath, &cerr); h == nil {
		msg := "unknown error"
		if cerr != nil {
			msg = C.GoString(cerr)
		}
		return fmt.Errorf("%s: %s", path, msg)
	}
	return nil
}
