package main

import (
	"errors"
	"fmt"
	"runtime/debug"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/spf13/cobra"

	"github.com/modelserve/modelserve/build"
	"github.com/modelserve/modelserve/internal/bytesize"
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
	rt, err := build.RuntimeFor(base, build.RuntimeOptions{GPU: o.gpu, Binary: o.binary, LibraryDir: o.runtimeLibs, Version: version})
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

// sourceURL is where modelserve's own source lives, from the module path
// compiled in.
func sourceURL() string {
	if info, ok := debug.ReadBuildInfo(); ok && info.Main.Path != "" {
		return "https://" + info.Main.Path
	}
	return ""
}
