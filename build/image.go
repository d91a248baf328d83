package build

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelserve/modelserve/onnxrt"
	"github.com/modelserve/modelserve/registry"
)

// Where things are in a modelserve image.
const (
	Root        = "/opt/modelserve"
	Binary      = Root + "/bin/modelserve"
	LibDir      = Root + "/lib"
	RegistryDir = Root + "/registry"
	// User runs the server: not root.
	User = "1000:1000"
)

// Annotation and label keys.
const (
	LabelRuntime      = "dev.modelserve.runtime"
	LabelVersion      = "dev.modelserve.version"
	LabelORT          = "dev.modelserve.onnxruntime"
	LabelDevice       = "dev.modelserve.device"
	LabelModelName    = "dev.modelserve.model.name"
	LabelModelVersion = "dev.modelserve.model.version"
	LabelModelSHA256  = "dev.modelserve.model.sha256"
	LabelModelSource  = "dev.modelserve.model.source"
)

// Devices a runtime is built for (LabelDevice).
const (
	DeviceCPU  = "cpu"
	DeviceCUDA = "cuda"
)

// Runtime is what the runtime layer carries: the modelserve binary and
// ONNX Runtime's libraries (with the CUDA provider's for a GPU image).
type Runtime struct {
	Binary string
	// Libraries are files to put in LibDir under their own names.
	Libraries []string
	// Version says what the layer holds ("<modelserve>+ort<version>[+cuda]"),
	// recorded so a later build on this image skips the layer.
	Version    string
	ORTVersion string
	Device     string
}

// Builder makes an image.
type Builder interface {
	Build(ctx context.Context) (v1.Image, error)
}

// ModelImage is a model's image: the base, the runtime layer unless the
// base already carries one, and the model layer, in that order, so a new
// model version changes only the last layer.
type ModelImage struct {
	Base    v1.Image
	BaseRef string
	Runtime Runtime
	Model   registry.Version
	Port    int
	// ModelserveVersion is the version of the modelserve building it.
	ModelserveVersion string
	// Source says where the model comes from (a repository, a training
	// run), if known; otherwise the image names modelserve's source.
	Source           string
	ModelserveSource string
}

// Build composes the image. It reads every file once, to learn the layers'
// digests; writing the image reads them again.
func (m ModelImage) Build(ctx context.Context) (v1.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	baseCfg, err := m.Base.ConfigFile()
	if err != nil {
		return nil, fmt.Errorf("reading the base image's config: %w", err)
	}
	format, err := formatOf(m.Base)
	if err != nil {
		return nil, err
	}
	img := m.Base
	rt := Runtime{
		Version:    baseCfg.Config.Labels[LabelRuntime],
		ORTVersion: baseCfg.Config.Labels[LabelORT],
		Device:     baseCfg.Config.Labels[LabelDevice],
	}
	addedRuntime := rt.Version == ""
	if addedRuntime {
		layer, err := m.runtimeLayer()
		if err != nil {
			return nil, err
		}
		if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: format.layer, History: v1.History{
			Created: v1.Time{Time: epoch}, CreatedBy: "modelserve build: runtime " + m.Runtime.Version,
		}}); err != nil {
			return nil, err
		}
		rt = m.Runtime
	}
	layer, err := m.modelLayer()
	if err != nil {
		return nil, err
	}
	if img, err = mutate.Append(img, mutate.Addendum{Layer: layer, MediaType: format.layer, History: v1.History{
		Created: v1.Time{Time: epoch}, CreatedBy: "modelserve build: model " + m.Model.Ref(),
	}}); err != nil {
		return nil, err
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cfg = cfg.DeepCopy()
	labels := m.annotations(rt)
	port := strconv.Itoa(m.Port)
	cfg.Created = v1.Time{Time: epoch}
	cfg.Config.User = User
	cfg.Config.WorkingDir = "/"
	cfg.Config.Entrypoint = []string{Binary, "serve"}
	cfg.Config.Cmd = nil
	env := map[string]string{
		"MODELSERVE_REGISTRY": RegistryDir,
		"MODELSERVE_MODEL":    m.Model.Ref(),
		"MODELSERVE_PORT":     port,
	}
	if addedRuntime {
		// Named outright: finding it beside the executable needs /proc.
		env[onnxrt.LibraryEnv] = path.Join(LibDir, "libonnxruntime.so.1")
	}
	cfg.Config.Env = mergeEnv(cfg.Config.Env, env)
	cfg.Config.ExposedPorts = map[string]struct{}{port + "/tcp": {}}
	cfg.Config.Healthcheck = &v1.HealthConfig{Test: []string{"CMD", Binary, "health", "--port", port}}
	if cfg.Config.Labels == nil {
		cfg.Config.Labels = map[string]string{}
	}
	for k, v := range labels {
		cfg.Config.Labels[k] = v
	}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(mutate.MediaType(img, format.manifest), format.config)
	if format != ociFormat {
		return img, nil // Docker's manifests have no annotations; the labels say it
	}
	d, err := m.Base.Digest()
	if err != nil {
		return nil, err
	}
	labels["org.opencontainers.image.base.digest"] = d.String()
	// A layout's path is this machine's; naming it would change the digest.
	if m.BaseRef != "" && !strings.HasPrefix(m.BaseRef, LayoutPrefix) {
		labels["org.opencontainers.image.base.name"] = m.BaseRef
	}
	return mutate.Annotations(img, labels).(v1.Image), nil
}

// annotations describe the image, on the manifest and as config labels.
func (m ModelImage) annotations(rt Runtime) map[string]string {
	a := map[string]string{
		"org.opencontainers.image.title":   m.Model.Ref(),
		"org.opencontainers.image.version": m.Model.Version,
		LabelRuntime:                       rt.Version,
		LabelVersion:                       m.ModelserveVersion,
		LabelORT:                           rt.ORTVersion,
		LabelDevice:                        rt.Device,
		LabelModelName:                     m.Model.Name,
		LabelModelVersion:                  m.Model.Version,
		LabelModelSHA256:                   m.Model.SHA256,
	}
	if m.Source != "" {
		a[LabelModelSource] = m.Source
		a["org.opencontainers.image.source"] = m.Source
	} else if m.ModelserveSource != "" {
		a["org.opencontainers.image.source"] = m.ModelserveSource
	}
	if m.Model.Description != "" {
		a["org.opencontainers.image.description"] = m.Model.Description
	}
	return a
}

func (m ModelImage) runtimeLayer() (v1.Layer, error) {
	if m.Runtime.Binary == "" {
		return nil, fmt.Errorf("the base image is not a modelserve runtime image, and no modelserve binary was given for the runtime layer")
	}
	files := []File{{Path: Binary, Mode: 0o755, Source: m.Runtime.Binary}}
	for _, lib := range m.Runtime.Libraries {
		files = append(files, File{Path: path.Join(LibDir, path.Base(lib)), Mode: 0o644, Source: lib})
	}
	return Layer(files)
}

// modelLayer holds the version's folder as the registry keeps it, so the
// server reads it like any registry.
func (m ModelImage) modelLayer() (v1.Layer, error) {
	// When and where the version was logged is this machine's business:
	// leaving it out gives every machine the same layer.
	v := m.Model
	v.Created = time.Time{}
	manifest, err := v.Manifest()
	if err != nil {
		return nil, err
	}
	dir := path.Join(RegistryDir, "models", v.Name, v.Version)
	files := []File{
		{Path: path.Join(dir, v.File), Mode: 0o444, Source: v.ModelPath()},
		{Path: path.Join(dir, "manifest.json"), Mode: 0o444, Data: manifest},
		{Path: path.Join(dir, "lock"), Mode: 0o444},
	}
	return Layer(files)
}

// mergeEnv sets vars over env (KEY=VALUE entries), keeping the order.
func mergeEnv(env []string, vars map[string]string) []string {
	out := slices.Clone(env)
	keys := make([]string, 0, len(vars))
	for k := range vars {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		i := slices.IndexFunc(out, func(e string) bool { return strings.HasPrefix(e, k+"=") })
		if i >= 0 {
			out[i] = k + "=" + vars[k]
		} else {
			out = append(out, k+"="+vars[k])
		}
	}
	return out
}

// format is a set of media types: OCI, or Docker's.
type format struct{ manifest, config, layer types.MediaType }

var (
	ociFormat    = format{types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer}
	dockerFormat = format{types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer}
)

// formatOf follows the base: an image is all OCI or all Docker, and only
// Docker's format carries a HEALTHCHECK that podman and Docker run.
func formatOf(base v1.Image) (format, error) {
	mt, err := base.MediaType()
	if err != nil {
		return format{}, fmt.Errorf("reading the base image's manifest: %w", err)
	}
	if mt == types.DockerManifestSchema2 {
		return dockerFormat, nil
	}
	return ociFormat, nil
}
