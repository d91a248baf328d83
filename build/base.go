package build

import (
	"context"
	"fmt"
	"runtime"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// LayoutPrefix marks a reference to an OCI layout on disk: oci:DIR[:TAG].
const LayoutPrefix = "oci:"

// refName is the annotation an OCI layout's index gives each tagged image.
const refName = "org.opencontainers.image.ref.name"

// Platform is what images are built for: this machine's.
func Platform() v1.Platform {
	return v1.Platform{OS: "linux", Architecture: runtime.GOARCH}
}

// LoadBase opens the base image: oci:DIR[:TAG] from an OCI layout, else a
// registry reference. A multi-platform base gives its image for Platform.
func LoadBase(ctx context.Context, ref string, remoteOpts []remote.Option, nameOpts ...name.Option) (v1.Image, error) {
	if dir, ok := strings.CutPrefix(ref, LayoutPrefix); ok {
		dir, tag := splitLayoutRef(dir)
		img, err := layoutImage(dir, tag)
		if err != nil {
			return nil, fmt.Errorf("base image %s: %w", ref, err)
		}
		return img, nil
	}
	r, err := name.ParseReference(ref, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("base image %q: %w", ref, err)
	}
	opts := append([]remote.Option{remote.WithContext(ctx), remote.WithPlatform(Platform())}, remoteOpts...)
	img, err := remote.Image(r, opts...)
	if err != nil {
		return nil, fmt.Errorf("fetching base image %s: %w", ref, err)
	}
	return img, nil
}

// splitLayoutRef splits DIR[:TAG]; a colon inside the directory's path
// is not a tag separator when what follows holds a slash.
func splitLayoutRef(s string) (dir, tag string) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 || strings.Contains(s[i+1:], "/") {
		return s, ""
	}
	return s[:i], s[i+1:]
}

// layoutImage finds the image tagged tag in the layout at dir, or its only
// image when tag is empty.
func layoutImage(dir, tag string) (v1.Image, error) {
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		return nil, fmt.Errorf("reading OCI layout %s: %w", dir, err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return nil, err
	}
	var found []v1.Descriptor
	for _, d := range im.Manifests {
		if tag == "" || d.Annotations[refName] == tag {
			found = append(found, d)
		}
	}
	switch {
	case len(found) == 0 && tag != "":
		return nil, fmt.Errorf("the OCI layout %s has no image tagged %q", dir, tag)
	case len(found) == 0:
		return nil, fmt.Errorf("the OCI layout %s holds no image", dir)
	case len(found) > 1:
		return nil, fmt.Errorf("the OCI layout %s holds %d images; name one as oci:%s:TAG", dir, len(found), dir)
	}
	return pick(idx, found[0])
}

// pick opens a layout entry: an image, or an index holding one per
// platform.
func pick(idx v1.ImageIndex, d v1.Descriptor) (v1.Image, error) {
	if !d.MediaType.IsIndex() {
		return idx.Image(d.Digest)
	}
	inner, err := idx.ImageIndex(d.Digest)
	if err != nil {
		return nil, err
	}
	im, err := inner.IndexManifest()
	if err != nil {
		return nil, err
	}
	want := Platform()
	for _, m := range im.Manifests {
		if m.Platform != nil && m.Platform.Satisfies(want) && !m.MediaType.IsIndex() {
			return inner.Image(m.Digest)
		}
	}
	return nil, fmt.Errorf("the image index %s has no image for %s/%s", d.Digest, want.OS, want.Architecture)
}
