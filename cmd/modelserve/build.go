package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/build"
	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/internal/liveline"
	"github.com/modelserve/modelserve/onnxrt"
)

type buildOptions struct {
	model       string
	base        string
	repo        string
	layout      string
	gpu         bool
	force       bool
	insecure    bool
	port        int
	tags        []string
	source      string
	binary      string
	runtimeLibs string
}

func newBuildCmd(g *globals) *cobra.Command {
	o := &buildOptions{}
	cmd := &cobra.Command{
		Use:   "build --model NAME[:VERSION] --base IMAGE --repo REGISTRY/REPOSITORY",
		Short: "Package a registered model into an OCI image and push it (no Docker daemon)",
		Long: `Package a registered model into an OCI image: the base image, a runtime
layer (this modelserve binary and ONNX Runtime; skipped when the base is
already a modelserve runtime image), and a model layer (the version's files),
in that order, so a new model version changes only the last layer. The image
runs "modelserve serve" on the baked-in model as uid 1000.

The same inputs give the same digest on any machine. Before sending anything,
build asks the registry for the image's content tag (sha256-<digest>): if it
is there, nothing is pushed (unless --force) and only the readable tag
NAME-VERSION is added. Blobs the registry holds are never sent twice.

--base is a registry reference (pin it by digest for repeatable builds) or
oci:DIR[:TAG] for an OCI layout on disk. Credentials come from the Docker
config (~/.docker/config.json, DOCKER_CONFIG, or podman's auth.json).

The last line on stdout is the pushed reference with its digest.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runBuild(cmd, g, o)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.model, "model", "", "model to package, NAME[:VERSION] (default version: the latest)")
	f.StringVar(&o.base, "base", "", "base image: a registry reference, or oci:DIR[:TAG]")
	f.StringVar(&o.repo, "repo", "", "where to push, REGISTRY/REPOSITORY, e.g. registry.example.com/models/iris")
	f.StringVar(&o.layout, "oci-layout", "", "also (or, without --repo, only) write the image to this OCI layout directory")
	f.BoolVar(&o.gpu, "gpu", false, "a GPU image: ONNX Runtime "+onnxrt.PinnedGPUVersion+" with its CUDA provider libraries (needs a CUDA 13, cuDNN 9 base)")
	f.BoolVar(&o.force, "force", false, "push even if the registry already holds this image")
	f.BoolVar(&o.insecure, "insecure", false, "allow a plain-HTTP or unverified-TLS registry")
	f.IntVar(&o.port, "port", 8080, "port the image serves on")
	f.StringArrayVar(&o.tags, "tag", nil, "readable tag, repeatable (default NAME-VERSION)")
	f.StringVar(&o.source, "source", "", "where the model comes from (a repository or training run), recorded in the image's annotations")
	f.StringVar(&o.binary, "binary", "", "modelserve binary for the runtime layer (default: this one)")
	f.StringVar(&o.runtimeLibs, "runtime-libs", "", "directory of the ONNX Runtime libraries for the runtime layer (default: those modelserve uses; with --gpu, those scripts/fetch-onnxruntime.sh --gpu fetched)")
	cmd.MarkFlagRequired("model")
	cmd.MarkFlagRequired("base")
	return cmd
}

func runBuild(cmd *cobra.Command, g *globals, o *buildOptions) error {
	ctx := cmd.Context()
	if o.repo == "" && o.layout == "" {
		return errors.New("say where the image goes: --repo REGISTRY/REPOSITORY, --oci-layout DIR, or both")
	}
	reg, v, release, err := g.use(o.model)
	if err != nil {
		return err
	}
	defer release()
	if err := reg.Verify(ctx, v); err != nil {
		return err
	}
	stderr := cmd.ErrOrStderr()
	start := time.Now()

	var nameOpts []name.Option
	if o.insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	progress := newProgress(stderr)
	var dsts []build.Destination
	if o.layout != "" {
		dsts = append(dsts, build.Layout{Dir: o.layout})
	}
	var pushTo *build.Registry
	if o.repo != "" {
		pushTo, err = build.NewRegistry(o.repo, build.RegistryOptions{
			Insecure:   o.insecure,
			OnBlob:     progress.blob,
			OnProgress: progress.update,
			UserAgent:  "modelserve/" + version,
		})
		if err != nil {
			return err
		}
		dsts = append(dsts, pushTo)
	}
	base, err := build.LoadBase(ctx, o.base, []remote.Option{remote.WithUserAgent("modelserve/" + version)}, nameOpts...)
	if err != nil {
		return err
	}
	rt, err := o.runtime(base)
	if err != nil {
		return err
	}
	tags := o.tags
	if len(tags) == 0 {
		tags = []string{v.Name + "-" + v.Version}
	}
	img := build.ModelImage{
		Base:              base,
		BaseRef:           o.base,
		Runtime:           rt,
		Model:             v,
		Port:              o.port,
		ModelserveVersion: version,
		Source:            o.source,
		ModelserveSource:  sourceURL(),
	}
	if o.source == "" {
		img.Source = v.Metadata["source"]
	}
	pub := build.Publisher{Builder: img, Tags: tags, Force: o.force, Built: func(i v1.Image) { progress.name(i, rt.Binary != "") }}
	results, err := pub.Publish(ctx, dsts...)
	progress.finish()
	if err != nil {
		return err
	}
	for i, r := range results {
		switch {
		case r.Skipped:
			fmt.Fprintf(stderr, "%s already holds this image; tagged %v\n", describe(dsts[i]), tags)
		case dsts[i] == build.Destination(pushTo):
			n, bytes := pushTo.Uploads().Sent()
			fmt.Fprintf(stderr, "pushed %d blobs, %s, to %s\n", n, bytesize.Format(bytes), describe(dsts[i]))
		default:
			fmt.Fprintf(stderr, "wrote %s\n", describe(dsts[i]))
		}
	}
	fmt.Fprintf(stderr, "built %s in %s\n", v.Ref(), time.Since(start).Round(time.Millisecond))
	for _, r := range results {
		fmt.Fprintln(cmd.OutOrStdout(), r.Ref)
	}
	return nil
}

func describe(d build.Destination) string {
	switch d := d.(type) {
	case build.Layout:
		return "OCI layout " + d.Dir
	case *build.Registry:
		return "repository " + d.Repository()
	}
	return fmt.Sprint(d)
}

// runtime says what the runtime layer holds; when the base already is a
// modelserve runtime image it is not needed, so nothing is looked up.
func (o *buildOptions) runtime(base v1.Image) (build.Runtime, error) {
	cfg, err := base.ConfigFile()
	if err != nil {
		return build.Runtime{}, fmt.Errorf("reading the base image's config: %w", err)
	}
	if have := cfg.Config.Labels[build.LabelRuntime]; have != "" {
		device := cfg.Config.Labels[build.LabelDevice]
		if o.gpu != (device == build.DeviceCUDA) {
			return build.Runtime{}, fmt.Errorf("the base image is a modelserve runtime image for %s (%s); --gpu=%t asks for the other kind", device, have, o.gpu)
		}
		return build.Runtime{}, nil
	}
	binary := o.binary
	if binary == "" {
		if binary, err = os.Executable(); err != nil {
			return build.Runtime{}, fmt.Errorf("finding this modelserve binary: %w (give --binary)", err)
		}
	}
	libs, core, err := o.libraries()
	if err != nil {
		return build.Runtime{}, err
	}
	// The library's own word on its version, not the one we pinned: a user
	// may bring theirs.
	ort, err := onnxrt.Load(core)
	if err != nil {
		return build.Runtime{}, err
	}
	device := build.DeviceCPU
	if o.gpu {
		device = build.DeviceCUDA
	}
	return build.Runtime{
		Binary:     binary,
		Libraries:  libs,
		Version:    fmt.Sprintf("%s+ort%s-%s", version, ort.Version, device),
		ORTVersion: ort.Version,
		Device:     device,
	}, nil
}

// libraries lists the ONNX Runtime files for the runtime layer and which
// is the core library.
func (o *buildOptions) libraries() (libs []string, core string, err error) {
	const coreName = "libonnxruntime.so.1"
	if !o.gpu {
		if o.runtimeLibs != "" {
			core = filepath.Join(o.runtimeLibs, coreName)
		} else if core, err = onnxrt.FindLibrary(); err != nil {
			return nil, "", err
		}
		if _, err := os.Stat(core); err != nil {
			return nil, "", fmt.Errorf("the runtime layer needs ONNX Runtime: %w", err)
		}
		return []string{core}, core, nil
	}
	dir := o.runtimeLibs
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

// sourceURL is where modelserve's own source lives, from the module path
// compiled in.
func sourceURL() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Path != "" {
		return "https://" + info.Main.Path
	}
	return ""
}

// progress reports pushes: one line per blob, and on a terminal a running
// total, redrawn in place.
type progress struct {
	out *liveline.Line

	mu    sync.Mutex
	last  time.Time
	names map[string]string // blob digest → what it is
}

// name learns what each of the image's blobs is, for the report.
func (p *progress) name(img v1.Image, addedRuntime bool) {
	m, err := img.Manifest()
	if err != nil {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.names = map[string]string{m.Config.Digest.String(): "config"}
	for i, l := range m.Layers {
		what := fmt.Sprintf("base layer %d", i+1)
		switch {
		case i == len(m.Layers)-1:
			what = "model layer"
		case i == len(m.Layers)-2 && addedRuntime:
			what = "runtime layer"
		}
		p.names[l.Digest.String()] = what
	}
}

func newProgress(w io.Writer) *progress {
	return &progress{out: liveline.New(w, liveline.IsTerminal(w))}
}

func (p *progress) blob(e build.BlobEvent) {
	short := e.Digest
	if len(short) > 19 {
		short = short[:19]
	}
	p.mu.Lock()
	what := p.names[e.Digest]
	p.mu.Unlock()
	if what == "" {
		what = "blob"
	}
	if e.Present {
		p.out.Print(fmt.Sprintf("  %-14s %s  already in the registry", what, short))
	} else {
		p.out.Print(fmt.Sprintf("  %-14s %s  sent %s", what, short, bytesize.Format(e.Bytes)))
	}
}

func (p *progress) update(u v1.Update) {
	if !p.out.Terminal() || u.Total == 0 {
		return
	}
	p.mu.Lock()
	if time.Since(p.last) < 100*time.Millisecond && u.Complete < u.Total {
		p.mu.Unlock()
		return
	}
	p.last = time.Now()
	p.mu.Unlock()
	p.out.Draw(fmt.Sprintf("  pushing %s / %s  %3d%%", bytesize.Format(u.Complete), bytesize.Format(u.Total), u.Complete*100/u.Total))
}

func (p *progress) finish() { p.out.Clear() }
