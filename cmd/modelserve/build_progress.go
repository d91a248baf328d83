package main

import (
	"fmt"
	"io"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/modelserve/modelserve/build"
	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/internal/liveline"
)

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
