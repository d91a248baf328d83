package build_test

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelserve/modelserve/build"
	"github.com/modelserve/modelserve/internal/ocitest"
)

// blobs are an image's layer and config digests.
func blobs(t *testing.T, img v1.Image) []string {
	t.Helper()
	m, err := img.Manifest()
	if err != nil {
		t.Fatal(err)
	}
	out := []string{m.Config.Digest.String()}
	for _, l := range m.Layers {
		out = append(out, l.Digest.String())
	}
	slices.Sort(out)
	return out
}

func TestRegistry_countsWhatItSendsAsTheRegistryDoes(t *testing.T) {
	ctx := context.Background()
	reg := ocitest.StartRegistry(t, nil)
	var events []build.BlobEvent
	dst, err := build.NewRegistry(reg.Addr+"/models/iris", build.RegistryOptions{OnBlob: func(e build.BlobEvent) { events = append(events, e) }})
	if err != nil {
		t.Fatal(err)
	}
	mi := modelImage(t, base(t, nil), version(t, "iris", "1", "weights"))
	img, err := mi.Build(ctx)
	if err != nil {
		t.Fatal(err)
	}
	res, err := build.Publisher{Builder: mi, Tags: []string{"iris-1"}}.Publish(ctx, dst)
	if err != nil {
		t.Fatal(err)
	}
	received := reg.BlobsReceived()
	slices.Sort(received)
	if want := blobs(t, img); !slices.Equal(received, want) {
		t.Fatalf("the registry received %v, want %v", received, want)
	}
	n, bytes := dst.Uploads().Sent()
	var size int64
	m, _ := img.Manifest()
	size = m.Config.Size
	for _, l := range m.Layers {
		size += l.Size
	}
	if n != len(received) || bytes != size || len(events) != n {
		t.Errorf("Uploads: %d blobs, %d bytes, %d events; the registry received %d blobs of %d bytes", n, bytes, len(events), len(received), size)
	}
	if res[0].Ref != reg.Addr+"/models/iris@"+res[0].Digest.String() || res[0].Skipped {
		t.Errorf("published %+v", res[0])
	}

	// Again: only the content tag is asked for, then the readable tag set.
	before := reg.Mark()
	res, err = build.Publisher{Builder: mi, Tags: []string{"iris-1", "stable"}}.Publish(ctx, dst)
	if err != nil || !res[0].Skipped {
		t.Fatalf("second publish: %+v %v", res, err)
	}
	after := reg.Mark() - 1 // without the mark itself
	var methods []string
	for _, q := range reg.Requests()[before:after] {
		if q.Path != "/v2/" {
			methods = append(methods, q.Method+" "+q.Path[strings.LastIndex(q.Path, "/")+1:])
		}
	}
	d := res[0].Digest
	want := []string{"HEAD " + build.ContentTag(d), "GET " + d.String(), "PUT iris-1", "PUT stable"}
	if !slices.Equal(methods, want) {
		t.Errorf("an unchanged publish asked %v, want %v", methods, want)
	}
	if got, ok, err := dst.Lookup(ctx, "stable"); err != nil || !ok || got != d {
		t.Errorf("stable names %s %t %v", got, ok, err)
	}

	// Forced: every blob is asked after and found, none sent.
	events = nil
	if _, err := (build.Publisher{Builder: mi, Force: true}).Publish(ctx, dst); err != nil {
		t.Fatal(err)
	}
	if got := reg.BlobsReceived(); len(got) != len(received) {
		t.Errorf("a forced publish of blobs the registry holds sent %d", len(got)-len(received))
	}
	for _, e := range events {
		if !e.Present {
			t.Errorf("forced publish: %+v", e)
		}
	}
}

func TestLoadBase(t *testing.T) {
	ctx := context.Background()
	img := base(t, map[string]string{"which": "amd"})
	other, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: "arm64", Config: v1.Config{Labels: map[string]string{"which": "arm"}}})
	if err != nil {
		t.Fatal(err)
	}
	ours, err := mutate.ConfigFile(img, &v1.ConfigFile{OS: "linux", Architecture: build.Platform().Architecture, Config: v1.Config{Labels: map[string]string{"which": "ours"}}})
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join(t.TempDir(), "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	tag := func(s string) layout.Option {
		return layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": s})
	}
	p.AppendImage(img, tag("plain"))
	multi := mutate.AppendManifests(empty.Index,
		mutate.IndexAddendum{Add: other, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: "arm64"}}},
		mutate.IndexAddendum{Add: ours, Descriptor: v1.Descriptor{Platform: &v1.Platform{OS: "linux", Architecture: build.Platform().Architecture}}})
	p.AppendIndex(multi, tag("multi"))
	single := filepath.Join(t.TempDir(), "single")
	if _, err := layout.Write(single, empty.Index); err != nil {
		t.Fatal(err)
	}
	layout.Path(single).AppendImage(img)

	reg := ocitest.StartRegistry(t, nil)
	ref, err := name.ParseReference(reg.Addr + "/base:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, ours); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		ref, which, err string
	}{
		{ref: "oci:" + dir + ":plain", which: "amd"},
		{ref: "oci:" + dir + ":multi", which: "ours"},
		{ref: "oci:" + single, which: "amd"},
		{ref: reg.Addr + "/base:1", which: "ours"},
		{ref: "oci:" + dir, err: "holds 2 images; name one"},
		{ref: "oci:" + dir + ":nonesuch", err: `no image tagged "nonesuch"`},
		{ref: "oci:" + t.TempDir(), err: "reading OCI layout"},
		{ref: reg.Addr + "/base:2", err: "fetching base image"},
		{ref: "UPPER/case:x", err: "base image"},
	} {
		got, err := build.LoadBase(ctx, tt.ref, nil)
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("%s: %v, want an error saying %q", tt.ref, err, tt.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s: %v", tt.ref, err)
			continue
		}
		cfg, _ := got.ConfigFile()
		if cfg.Config.Labels["which"] != tt.which {
			t.Errorf("%s gave the %q image, want %q", tt.ref, cfg.Config.Labels["which"], tt.which)
		}
	}
}

func TestLayoutRef_directoriesWithColons(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a:b", "layout")
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		t.Fatal(err)
	}
	p.AppendImage(base(t, map[string]string{"which": "colon"}))
	img, err := build.LoadBase(context.Background(), "oci:"+dir, nil)
	if err != nil {
		t.Fatal(fmt.Errorf("a layout under a folder with a colon: %w", err))
	}
	cfg, _ := img.ConfigFile()
	if cfg.Config.Labels["which"] != "colon" {
		t.Errorf("labels %v", cfg.Config.Labels)
	}
}
