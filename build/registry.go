package build

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/go-containerregistry/pkg/authn"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
)

// RegistryOptions say how to reach a registry and what to report.
type RegistryOptions struct {
	// Insecure allows plain HTTP and unverified TLS.
	Insecure bool
	// Keychain finds credentials; nil means the Docker config
	// (~/.docker/config.json, DOCKER_CONFIG, then podman's auth.json).
	Keychain authn.Keychain
	// OnBlob hears of each blob as the registry takes it or shows it
	// already has it. Blobs travel in parallel; the calls do not overlap.
	OnBlob func(BlobEvent)
	// OnProgress hears of bytes written, across all blobs of a write.
	OnProgress func(v1.Update)
	UserAgent  string
}

// BlobEvent is one blob of an image at a registry.
type BlobEvent struct {
	Digest string
	// Bytes is what was sent for it: zero when Present.
	Bytes int64
	// Present says the registry already held the blob, nothing was sent.
	Present bool
}

// Uploads sums up what a Registry sent.
type Uploads struct {
	Blobs     []BlobEvent
	Manifests int
}

// Sent counts the blobs uploaded and their bytes.
func (u Uploads) Sent() (blobs int, bytes int64) {
	for _, b := range u.Blobs {
		if !b.Present {
			blobs++
			bytes += b.Bytes
		}
	}
	return blobs, bytes
}

// Registry is a repository in an OCI distribution registry.
type Registry struct {
	repo  name.Repository
	opts  RegistryOptions
	watch *watch
}

// NewRegistry names a repository, REGISTRY/REPOSITORY; nothing is
// contacted until an image is looked up or written.
func NewRegistry(repo string, o RegistryOptions) (*Registry, error) {
	var nameOpts []name.Option
	if o.Insecure {
		nameOpts = append(nameOpts, name.Insecure)
	}
	r, err := name.NewRepository(repo, nameOpts...)
	if err != nil {
		return nil, fmt.Errorf("repository %q: %w", repo, err)
	}
	if o.Keychain == nil {
		o.Keychain = authn.DefaultKeychain
	}
	base := remote.DefaultTransport.(*http.Transport).Clone()
	if o.Insecure {
		base.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
	return &Registry{repo: r, opts: o, watch: &watch{base: base, on: o.OnBlob, sent: map[string]int64{}}}, nil
}

// Uploads reports what was sent so far.
func (r *Registry) Uploads() Uploads {
	r.watch.mu.Lock()
	defer r.watch.mu.Unlock()
	return Uploads{Blobs: append([]BlobEvent(nil), r.watch.events...), Manifests: r.watch.manifests}
}

// Repository is REGISTRY/REPOSITORY.
func (r *Registry) Repository() string { return r.repo.String() }

// Ref is REGISTRY/REPOSITORY@DIGEST.
func (r *Registry) Ref(digest v1.Hash) string {
	return r.repo.Digest(digest.String()).String()
}

func (r *Registry) options(ctx context.Context) []remote.Option {
	opts := []remote.Option{
		remote.WithContext(ctx),
		remote.WithAuthFromKeychain(r.opts.Keychain),
		remote.WithTransport(r.watch),
	}
	if r.opts.UserAgent != "" {
		opts = append(opts, remote.WithUserAgent(r.opts.UserAgent))
	}
	return opts
}

// Lookup asks for the manifest tagged tag, downloading nothing.
func (r *Registry) Lookup(ctx context.Context, tag string) (v1.Hash, bool, error) {
	desc, err := remote.Head(r.repo.Tag(tag), r.options(ctx)...)
	var terr *transport.Error
	if errors.As(err, &terr) && terr.StatusCode == http.StatusNotFound {
		return v1.Hash{}, false, nil
	}
	if err != nil {
		return v1.Hash{}, false, r.explain(fmt.Errorf("asking %s for %s: %w", r.repo, tag, err))
	}
	return desc.Digest, true, nil
}

// Write pushes img under the first tag, then points the others at it.
func (r *Registry) Write(ctx context.Context, img v1.Image, tags []string) error {
	if len(tags) == 0 {
		return errors.New("pushing an image needs a tag")
	}
	opts := r.options(ctx)
	if r.opts.OnProgress != nil {
		updates := make(chan v1.Update, 64)
		done := make(chan struct{})
		go func() {
			defer close(done)
			for u := range updates {
				r.opts.OnProgress(u)
			}
		}()
		// remote.Write closes the channel when it returns.
		defer func() { <-done }()
		opts = append(opts, remote.WithProgress(updates))
	}
	ref := r.repo.Tag(tags[0])
	if err := remote.Write(ref, img, opts...); err != nil {
		return r.explain(fmt.Errorf("pushing %s: %w", ref, err))
	}
	return r.tag(ctx, img, tags[1:])
}

// Tag points tags at an image the repository holds: manifests only.
func (r *Registry) Tag(ctx context.Context, digest v1.Hash, tags []string) error {
	if len(tags) == 0 {
		return nil
	}
	desc, err := remote.Get(r.repo.Digest(digest.String()), r.options(ctx)...)
	if err != nil {
		return r.explain(fmt.Errorf("reading %s: %w", r.Ref(digest), err))
	}
	return r.tag(ctx, desc, tags)
}

func (r *Registry) tag(ctx context.Context, t remote.Taggable, tags []string) error {
	for _, tag := range tags {
		ref := r.repo.Tag(tag)
		if err := remote.Tag(ref, t, r.options(ctx)...); err != nil {
			return r.explain(fmt.Errorf("tagging %s: %w", ref, err))
		}
	}
	return nil
}

// explain adds what to do about a refusal to the registry's own words.
func (r *Registry) explain(err error) error {
	var terr *transport.Error
	if !errors.As(err, &terr) {
		return err
	}
	switch terr.StatusCode {
	case http.StatusUnauthorized:
		return fmt.Errorf("%w\nthe registry %s wants credentials it did not get or did not accept: log in with docker login or podman login (modelserve reads ~/.docker/config.json, DOCKER_CONFIG or podman's auth.json)", err, r.repo.RegistryStr())
	case http.StatusForbidden:
		return fmt.Errorf("%w\nthe registry %s accepted the credentials but they may not push to %s", err, r.repo.RegistryStr(), r.repo.RepositoryStr())
	}
	return err
}

// watch is the transport under the registry client: it sees each request
// the distribution protocol makes, so it counts what was really sent
// rather than what the client meant to send.
type watch struct {
	base http.RoundTripper
	on   func(BlobEvent)

	mu        sync.Mutex
	sent      map[string]int64 // upload session path → bytes sent
	events    []BlobEvent
	manifests int
}

func (w *watch) RoundTrip(req *http.Request) (*http.Response, error) {
	var body *countingBody
	if req.Body != nil && (req.Method == http.MethodPatch || req.Method == http.MethodPut) {
		req = req.Clone(req.Context())
		body = &countingBody{rc: req.Body}
		req.Body = body
	}
	resp, err := w.base.RoundTrip(req)
	if err != nil {
		return resp, err
	}
	var n int64
	if body != nil {
		n = body.n.Load()
	}
	w.observe(req, resp.StatusCode, n)
	return resp, nil
}

// observe reads one exchange of the distribution protocol: HEAD of a blob
// (200: present), POST with mount (201: present), PATCH (bytes sent), PUT
// with the digest (201: the blob is complete), PUT of a manifest.
func (w *watch) observe(req *http.Request, status int, n int64) {
	p := req.URL.Path
	w.mu.Lock()
	defer w.mu.Unlock()
	var ev BlobEvent
	switch {
	case strings.Contains(p, "/blobs/uploads/"):
		switch {
		case req.Method == http.MethodPatch && status == http.StatusAccepted:
			w.sent[p] += n
			return
		case req.Method == http.MethodPut && status == http.StatusCreated && req.URL.Query().Get("digest") != "":
			ev = BlobEvent{Digest: req.URL.Query().Get("digest"), Bytes: w.sent[p] + n}
			delete(w.sent, p)
		case req.Method == http.MethodPost && status == http.StatusCreated && req.URL.Query().Get("mount") != "":
			ev = BlobEvent{Digest: req.URL.Query().Get("mount"), Present: true}
		default:
			return
		}
	case req.Method == http.MethodHead && strings.Contains(p, "/blobs/") && status == http.StatusOK:
		ev = BlobEvent{Digest: p[strings.LastIndex(p, "/")+1:], Present: true}
	case req.Method == http.MethodPut && strings.Contains(p, "/manifests/") && status == http.StatusCreated:
		w.manifests++
		return
	default:
		return
	}
	w.events = append(w.events, ev)
	if w.on != nil {
		w.on(ev)
	}
}

// countingBody counts what the transport's writer goroutine reads.
type countingBody struct {
	rc io.ReadCloser
	n  atomic.Int64
}

func (c *countingBody) Read(p []byte) (int, error) {
	n, err := c.rc.Read(p)
	c.n.Add(int64(n))
	return n, err
}

func (c *countingBody) Close() error { return c.rc.Close() }
