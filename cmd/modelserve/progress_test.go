package main

import (
	"bytes"
	"testing"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/static"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/modelserve/modelserve/build"
	"github.com/modelserve/modelserve/internal/liveline"
)

func TestProgress_plainLinesOrALiveTotal(t *testing.T) {
	var layers []v1.Layer
	for _, s := range []string{"base", "runtime", "model"} {
		layers = append(layers, static.NewLayer([]byte(s), types.OCILayer))
	}
	img, err := mutate.AppendLayers(empty.Image, layers...)
	if err != nil {
		t.Fatal(err)
	}
	digest := func(l v1.Layer) string { d, _ := l.Digest(); return d.String() }
	for _, tt := range []struct {
		name     string
		terminal bool
		want     string
	}{
		{"pipe", false, "  runtime layer  sha256:" + digest(layers[1])[7:19] + "  sent 1.0 MiB\n" +
			"  base layer 1   sha256:" + digest(layers[0])[7:19] + "  already in the registry\n"},
		{"terminal", true, "\r\033[K  pushing 512.0 KiB / 1.0 MiB   50%" +
			"\r\033[K  runtime layer  sha256:" + digest(layers[1])[7:19] + "  sent 1.0 MiB\n" +
			"  base layer 1   sha256:" + digest(layers[0])[7:19] + "  already in the registry\n"},
	} {
		var out bytes.Buffer
		p := newProgress(&out)
		p.out = liveline.New(&out, tt.terminal)
		p.name(img, true)
		p.update(v1.Update{Total: 1 << 20, Complete: 1 << 19})
		p.blob(build.BlobEvent{Digest: digest(layers[1]), Bytes: 1 << 20})
		p.blob(build.BlobEvent{Digest: digest(layers[0]), Present: true})
		p.finish()
		if got := out.String(); got != tt.want {
			t.Errorf("%s:\n%q\nwant\n%q", tt.name, got, tt.want)
		}
	}
}
