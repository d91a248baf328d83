package build

import (
	"context"
	"fmt"

	v1 "github.com/google/go-containerregistry/pkg/v1"
)

// Destination is where images go: a registry repository or an OCI layout.
type Destination interface {
	// Lookup returns the digest of the image tagged tag, if there is one.
	Lookup(ctx context.Context, tag string) (digest v1.Hash, ok bool, err error)
	// Write stores img, blobs the destination lacks first, under each tag.
	Write(ctx context.Context, img v1.Image, tags []string) error
	// Tag adds tags to an image the destination already holds.
	Tag(ctx context.Context, digest v1.Hash, tags []string) error
	// Ref names an image there by digest, for people and scripts.
	Ref(digest v1.Hash) string
}

// ContentTag is the tag an image is stored under whatever else it is
// called: a function of its digest, so a later build can ask the
// destination whether it holds the same bytes before sending any.
func ContentTag(digest v1.Hash) string {
	return digest.Algorithm + "-" + digest.Hex
}

// Publisher builds an image and stores it unless the destination already
// has it. Skipping is decided here, from the built image's digest: the
// builder knows nothing about destinations.
type Publisher struct {
	Builder Builder
	// Tags are readable names added to the image, e.g. NAME-VERSION.
	Tags []string
	// Force writes the image even where its content tag is present.
	Force bool
	// Built, if set, sees the image before it is written anywhere.
	Built func(v1.Image)
}

// Published is what one destination received.
type Published struct {
	Ref    string
	Digest v1.Hash
	// Skipped says the destination already held the image; only its tags
	// were set.
	Skipped bool
}

// Publish builds the image once and stores it in each destination, in
// order.
func (p Publisher) Publish(ctx context.Context, dsts ...Destination) ([]Published, error) {
	img, err := p.Builder.Build(ctx)
	if err != nil {
		return nil, err
	}
	digest, err := img.Digest()
	if err != nil {
		return nil, fmt.Errorf("computing the image's digest: %w", err)
	}
	content := ContentTag(digest)
	if p.Built != nil {
		p.Built(img)
	}
	var out []Published
	for _, dst := range dsts {
		res := Published{Ref: dst.Ref(digest), Digest: digest}
		held := false
		if !p.Force {
			got, ok, err := dst.Lookup(ctx, content)
			if err != nil {
				return out, err
			}
			held = ok && got == digest
		}
		if held {
			err = dst.Tag(ctx, digest, p.Tags)
			res.Skipped = true
		} else {
			err = dst.Write(ctx, img, append([]string{content}, p.Tags...))
		}
		if err != nil {
			return out, err
		}
		out = append(out, res)
	}
	return out, nil
}
