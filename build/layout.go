package build

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/match"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/partial"

	"github.com/modelserve/modelserve/internal/atomicfile"
)

// Layout is an OCI image layout on disk, each image in its index named by
// a tag (org.opencontainers.image.ref.name), as skopeo and umoci read it.
type Layout struct {
	Dir string
}

// Ref is oci:DIR@DIGEST.
func (l Layout) Ref(digest v1.Hash) string {
	return LayoutPrefix + l.Dir + "@" + digest.String()
}

func (l Layout) open(create bool) (layout.Path, error) {
	p, err := layout.FromPath(l.Dir)
	if err == nil || !create || !errors.Is(err, fs.ErrNotExist) {
		if err != nil {
			return "", fmt.Errorf("opening OCI layout %s: %w", l.Dir, err)
		}
		return p, nil
	}
	if entries, rerr := os.ReadDir(l.Dir); rerr == nil && len(entries) > 0 {
		return "", fmt.Errorf("%s is neither an OCI layout nor empty", l.Dir)
	}
	if p, err = layout.Write(l.Dir, empty.Index); err != nil {
		return "", fmt.Errorf("creating OCI layout %s: %w", l.Dir, err)
	}
	return p, nil
}

// Lookup finds the image tagged tag in the layout's index.
func (l Layout) Lookup(_ context.Context, tag string) (v1.Hash, bool, error) {
	if _, err := os.Stat(filepath.Join(l.Dir, "index.json")); errors.Is(err, fs.ErrNotExist) {
		return v1.Hash{}, false, nil
	}
	p, err := l.open(false)
	if err != nil {
		return v1.Hash{}, false, err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return v1.Hash{}, false, err
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return v1.Hash{}, false, fmt.Errorf("reading OCI layout %s: %w", l.Dir, err)
	}
	for _, d := range im.Manifests {
		if d.Annotations[refName] == tag {
			// An index entry whose blobs went missing does not count.
			if _, err := p.Image(d.Digest); err != nil {
				return v1.Hash{}, false, nil
			}
			return d.Digest, true, nil
		}
	}
	return v1.Hash{}, false, nil
}

// Write stores img's blobs, those the layout lacks, and one index entry
// per tag, replacing what the tag named before.
func (l Layout) Write(ctx context.Context, img v1.Image, tags []string) error {
	p, err := l.open(true)
	if err != nil {
		return err
	}
	if err := p.WriteImage(img); err != nil {
		return fmt.Errorf("writing the image to %s: %w", l.Dir, err)
	}
	return l.tag(ctx, p, img, tags)
}

// Tag adds index entries for an image the layout holds.
func (l Layout) Tag(ctx context.Context, digest v1.Hash, tags []string) error {
	p, err := l.open(false)
	if err != nil {
		return err
	}
	img, err := p.Image(digest)
	if err != nil {
		return fmt.Errorf("reading %s: %w", l.Ref(digest), err)
	}
	return l.tag(ctx, p, img, tags)
}

// tag rewrites the index once for all tags, through a temporary file and
// a rename, so a reader never sees half an index.
func (l Layout) tag(ctx context.Context, p layout.Path, img v1.Image, tags []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	idx, err := p.ImageIndex()
	if err != nil {
		return fmt.Errorf("reading OCI layout %s: %w", l.Dir, err)
	}
	desc, err := partial.Descriptor(img)
	if err != nil {
		return err
	}
	for _, tag := range tags {
		d := *desc
		d.Annotations = map[string]string{refName: tag}
		idx = mutate.AppendManifests(mutate.RemoveManifests(idx, match.Annotation(refName, tag)),
			mutate.IndexAddendum{Add: img, Descriptor: d})
	}
	im, err := idx.IndexManifest()
	if err != nil {
		return err
	}
	raw, err := json.MarshalIndent(im, "", "   ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(filepath.Join(l.Dir, "index.json"), 0o644, func(w io.Writer) error {
		_, err := w.Write(raw)
		return err
	}); err != nil {
		return fmt.Errorf("tagging in %s: %w", l.Dir, err)
	}
	return nil
}
