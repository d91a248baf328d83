package build_test

import (
	"archive/tar"
	"context"
	"encoding/json"
	"errors"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelserve/modelserve/build"
	"github.com/modelserve/modelserve/registry"
)

// version is a registry version on disk, as registry.Log leaves one.
func version(t *testing.T, name, ver, weights string) registry.Version {
	t.Helper()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "model.onnx"), weights, 0o644, time.Now())
	return registry.Version{
		Name: name, Version: ver, Created: time.Now().UTC(), File: "model.onnx", Dir: dir,
		Size: int64(len(weights)), SHA256: strings.Repeat("ab", 32), Comment: "test",
	}
}

// base is a plain OCI image with some configuration of its own.
func base(t *testing.T, labels map[string]string) v1.Image {
	t.Helper()
	img, err := mutate.Config(empty.Image, v1.Config{Env: []string{"PATH=/usr/bin:/bin", "MODELSERVE_PORT=1"}, Labels: labels})
	if err != nil {
		t.Fatal(err)
	}
	return mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
}

func modelImage(t *testing.T, b v1.Image, v registry.Version) build.ModelImage {
	dir := t.TempDir()
	return build.ModelImage{
		Base: b,
		Runtime: build.Runtime{
			Binary:     writeFile(t, filepath.Join(dir, "modelserve"), "elf", 0o755, time.Now()),
			Libraries:  []string{writeFile(t, filepath.Join(dir, "libonnxruntime.so.1"), "ort", 0o644, time.Now())},
			Version:    "test+ort1.30.0-cpu",
			ORTVersion: "1.30.0",
			Device:     build.DeviceCPU,
		},
		Model:             v,
		Port:              8080,
		ModelserveVersion: "test",
		ModelserveSource:  "https://example.com/modelserve",
	}
}

// files lists a layer's entries with their contents.
func files(t *testing.T, l v1.Layer) map[string]string {
	t.Helper()
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	out := map[string]string{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(tr)
		out[h.Name] = string(b)
	}
}

func TestModelImage_layersAndConfig(t *testing.T) {
	v := version(t, "iris", "3", "weights")
	mi := modelImage(t, base(t, nil), v)
	mi.BaseRef = "registry.example.com/base:1"
	img, err := mi.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 2 {
		t.Fatalf("%d layers (%v), want runtime and model", len(layers), err)
	}
	runtime := files(t, layers[0])
	if runtime["opt/modelserve/bin/modelserve"] != "elf" || runtime["opt/modelserve/lib/libonnxruntime.so.1"] != "ort" {
		t.Errorf("runtime layer: %v", runtime)
	}
	model := files(t, layers[1])
	if model["opt/modelserve/registry/models/iris/3/model.onnx"] != "weights" {
		t.Errorf("model layer: %v", model)
	}
	if _, ok := model["opt/modelserve/registry/models/iris/3/lock"]; !ok {
		t.Error("the model layer has no lock file for the server to hold")
	}
	var manifest map[string]any
	if err := json.Unmarshal([]byte(model["opt/modelserve/registry/models/iris/3/manifest.json"]), &manifest); err != nil {
		t.Fatal(err)
	}
	if _, ok := manifest["created"]; ok || manifest["sha256"] != v.SHA256 || manifest["comment"] != "test" {
		t.Errorf("packaged manifest: %v (created must be left out)", manifest)
	}

	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	c := cfg.Config
	if c.User != "1000:1000" || strings.Join(c.Entrypoint, " ") != "/opt/modelserve/bin/modelserve serve" {
		t.Errorf("user %q, entrypoint %v", c.User, c.Entrypoint)
	}
	wantEnv := "PATH=/usr/bin:/bin MODELSERVE_PORT=8080 MODELSERVE_MODEL=iris:3 MODELSERVE_ORT_LIB=/opt/modelserve/lib/libonnxruntime.so.1 MODELSERVE_REGISTRY=/opt/modelserve/registry"
	if got := strings.Join(c.Env, " "); got != wantEnv {
		t.Errorf("env:\n%s\nwant:\n%s", got, wantEnv)
	}
	if _, ok := c.ExposedPorts["8080/tcp"]; !ok || c.Healthcheck == nil || strings.Join(c.Healthcheck.Test, " ") != "CMD /opt/modelserve/bin/modelserve health --port 8080" {
		t.Errorf("ports %v, healthcheck %+v", c.ExposedPorts, c.Healthcheck)
	}
	if !cfg.Created.Equal(time.Unix(0, 0)) {
		t.Errorf("created %s", cfg.Created)
	}
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		build.LabelModelName: "iris", build.LabelModelVersion: "3", build.LabelModelSHA256: v.SHA256,
		build.LabelRuntime: "test+ort1.30.0-cpu", build.LabelDevice: "cpu", build.LabelORT: "1.30.0", build.LabelVersion: "test",
		"org.opencontainers.image.source": "https://example.com/modelserve",
	} {
		if m.Annotations[k] != want || c.Labels[k] != want {
			t.Errorf("%s: annotation %q, label %q, want %q", k, m.Annotations[k], c.Labels[k], want)
		}
	}
	baseDigest, _ := mi.Base.Digest()
	if m.Annotations["org.opencontainers.image.base.name"] != mi.BaseRef || m.Annotations["org.opencontainers.image.base.digest"] != baseDigest.String() {
		t.Errorf("base annotations: %v", m.Annotations)
	}
	if m.MediaType != "application/vnd.oci.image.manifest.v1+json" || m.Config.MediaType != "application/vnd.oci.image.config.v1+json" {
		t.Errorf("media types %s, %s", m.MediaType, m.Config.MediaType)
	}
}

func TestModelImage_followsTheBasesFormat(t *testing.T) {
	docker, err := mutate.Config(empty.Image, v1.Config{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name                    string
		base                    v1.Image
		manifest, config, layer types.MediaType
	}{
		{"oci", base(t, nil), types.OCIManifestSchema1, types.OCIConfigJSON, types.OCILayer},
		{"docker", docker, types.DockerManifestSchema2, types.DockerConfigJSON, types.DockerLayer},
	} {
		img, err := modelImage(t, tt.base, version(t, "iris", "1", "weights")).Build(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if m.MediaType != tt.manifest || m.Config.MediaType != tt.config {
			t.Errorf("%s base: manifest %s, config %s", tt.name, m.MediaType, m.Config.MediaType)
		}
		for _, l := range m.Layers {
			if l.MediaType != tt.layer {
				t.Errorf("%s base: layer %s", tt.name, l.MediaType)
			}
		}
	}
}

func TestModelImage_newVersionChangesOnlyTheModelLayer(t *testing.T) {
	b := base(t, nil)
	mi := modelImage(t, b, version(t, "iris", "1", "weights"))
	first, err := mi.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mi.Model = version(t, "iris", "2", "new weights")
	second, err := mi.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	l1, _ := first.Layers()
	l2, _ := second.Layers()
	if digest(t, l1[0]) != digest(t, l2[0]) || digest(t, l1[1]) == digest(t, l2[1]) {
		t.Errorf("runtime layers %s, %s; model layers %s, %s", digest(t, l1[0]), digest(t, l2[0]), digest(t, l1[1]), digest(t, l2[1]))
	}
	// The same version logged again, elsewhere, later: the same image.
	again := mi
	again.Model = version(t, "iris", "2", "new weights")
	again.Model.Created = time.Now().Add(time.Hour)
	d2, _ := second.Digest()
	if img, err := again.Build(context.Background()); err != nil {
		t.Fatal(err)
	} else if d, _ := img.Digest(); d != d2 {
		t.Errorf("the same version logged elsewhere gave %s, then %s", d, d2)
	}
}

func TestModelImage_onARuntimeBaseAddsOnlyTheModel(t *testing.T) {
	b := base(t, map[string]string{build.LabelRuntime: "v9+ort1.29.0-cuda", build.LabelORT: "1.29.0", build.LabelDevice: "cuda"})
	mi := modelImage(t, b, version(t, "iris", "1", "weights"))
	mi.Runtime = build.Runtime{} // nothing to add
	img, err := mi.Build(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	layers, _ := img.Layers()
	cfg, _ := img.ConfigFile()
	if len(layers) != 1 || cfg.Config.Labels[build.LabelRuntime] != "v9+ort1.29.0-cuda" || cfg.Config.Labels[build.LabelDevice] != "cuda" {
		t.Errorf("%d layers, labels %v", len(layers), cfg.Config.Labels)
	}
	for _, e := range cfg.Config.Env {
		if strings.HasPrefix(e, "MODELSERVE_ORT_LIB=") {
			t.Errorf("the runtime base says where its library is, not the model image: %s", e)
		}
	}

	mi.Base = base(t, nil)
	if _, err := mi.Build(context.Background()); err == nil || !strings.Contains(err.Error(), "not a modelserve runtime image") {
		t.Errorf("a plain base and no binary: %v", err)
	}
}

func TestPublisher_skipsWhatTheLayoutHolds(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "layout")
	dst := build.Layout{Dir: dir}
	mi := modelImage(t, base(t, nil), version(t, "iris", "1", "weights"))
	for i, tt := range []struct {
		force, skipped bool
	}{{false, false}, {false, true}, {true, false}} {
		res, err := build.Publisher{Builder: mi, Tags: []string{"iris-1", "latest"}, Force: tt.force}.Publish(ctx, dst)
		if err != nil {
			t.Fatal(err)
		}
		if len(res) != 1 || res[0].Skipped != tt.skipped || res[0].Ref != "oci:"+dir+"@"+res[0].Digest.String() {
			t.Errorf("publish %d (force %t): %+v, want skipped %t", i, tt.force, res, tt.skipped)
		}
		for _, tag := range []string{build.ContentTag(res[0].Digest), "iris-1", "latest"} {
			if d, ok, err := dst.Lookup(ctx, tag); err != nil || !ok || d != res[0].Digest {
				t.Errorf("publish %d: %s names %s %t %v", i, tag, d, ok, err)
			}
		}
	}
	// A new version moves the readable tags it shares, and leaves the
	// old image under its own content tag.
	old, _, _ := dst.Lookup(ctx, "latest")
	mi.Model = version(t, "iris", "2", "new weights")
	res, err := build.Publisher{Builder: mi, Tags: []string{"iris-2", "latest"}}.Publish(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	if d, _, _ := dst.Lookup(ctx, "latest"); d != res[0].Digest || d == old {
		t.Errorf("latest names %s; the new image is %s, the old %s", d, res[0].Digest, old)
	}
	if d, ok, _ := dst.Lookup(ctx, build.ContentTag(old)); !ok || d != old {
		t.Errorf("the old image's content tag names %s", d)
	}
	if _, ok, err := dst.Lookup(ctx, "nonesuch"); ok || err != nil {
		t.Errorf("an unknown tag: %t %v", ok, err)
	}
}

func TestLayout_refusesAFolderThatIsNotOne(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "notes.txt"), "mine", 0o644, time.Now())
	mi := modelImage(t, base(t, nil), version(t, "iris", "1", "weights"))
	_, err := build.Publisher{Builder: mi}.Publish(context.Background(), build.Layout{Dir: dir})
	if err == nil || !strings.Contains(err.Error(), "neither an OCI layout nor empty") {
		t.Errorf("publishing into a folder of other files: %v", err)
	}
}
