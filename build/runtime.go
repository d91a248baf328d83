package build

import (
	"fmt"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/modelserve/modelserve/onnxrt"
)

// RuntimeOptions say where the runtime layer's files come from.
type RuntimeOptions struct {
	// GPU asks for the CUDA build of ONNX Runtime.
	GPU bool
	// Binary is the modelserve binary to put in (default: this one);
	// LibraryDir where ONNX Runtime's libraries are (default: where this
	// process finds them); Version modelserve's version, for the label.
	Binary, LibraryDir, Version string
}

// RuntimeFor says what the runtime layer of an image built on base holds;
// when base already is a modelserve runtime image (for the same device)
// none is needed, so nothing is looked up.
func RuntimeFor(base v1.Image, o RuntimeOptions) (Runtime, error) {
	cfg, err := base.ConfigFile()
	if err != nil {
		return Runtime{}, fmt.Errorf("reading the base image's config: %w", err)
	}
	if have := cfg.Config.Labels[LabelRuntime]; have != "" {
		device := cfg.Config.Labels[LabelDevice]
		if o.GPU != (device == DeviceCUDA) {
			return Runtime{}, fmt.Errorf("the base image is a modelserve runtime image for %s (%s); --gpu=%t asks for the other kind", device, have, o.GPU)
		}
		return Runtime{}, nil
	}
	binary := o.Binary
	if binary == "" {
		if binary, err = os.Executable(); err != nil {
			return Runtime{}, fmt.Errorf("finding this modelserve binary: %w (give --binary)", err)
		}
	}
	libs, core, err := libraries(o)
	if err != nil {
		return Runtime{}, err
	}
	// The library's own word on its version, not the one we pinned: a user
	// may bring theirs.
	ort, err := onnxrt.Load(core)
	if err != nil {
		return Runtime{}, err
	}
	device := DeviceCPU
	if o.GPU {
		device = DeviceCUDA
	}
	return Runtime{
		Binary:     binary,
		Libraries:  libs,
		Version:    fmt.Sprintf("%s+ort%s-%s", o.Version, ort.Version, device),
		ORTVersion: ort.Version,
		Device:     device,
	}, nil
}

// libraries lists the ONNX Runtime files for the runtime layer and which
// is the core library.
func libraries(o RuntimeOptions) (libs []string, core string, err error) {
	const coreName = "libonnxruntime.so.1"
	if !o.GPU {
		if o.LibraryDir != "" {
			core = filepath.Join(o.LibraryDir, coreName)
		} else if core, err = onnxrt.FindLibrary(); err != nil {
			return nil, "", err
		}
		if _, err := os.Stat(core); err != nil {
			return nil, "", fmt.Errorf("the runtime layer needs ONNX Runtime: %w", err)
		}
		return []string{core}, core, nil
	}
	dir := o.LibraryDir
	if dir == "" {
		dir = onnxrt.GPULibraryDir()
	}
	for _, f := range []string{coreName, "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so", "libonnxruntime_providers_tensorrt.so"} {
		p := filepath.Join(dir, f)
		if _, err := os.Stat(p); err != nil {
			if f == "libonnxruntime_providers_tensorrt.so" {
				continue // optional: CUDA alone serves
			}
			return nil, "", fmt.Errorf("a GPU image needs %s in %s: %w; run scripts/fetch-onnxruntime.sh --gpu, or give --runtime-libs", f, dir, err)
		}
		libs = append(libs, p)
	}
	return libs, filepath.Join(dir, coreName), nil
}
