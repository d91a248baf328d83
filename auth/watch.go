package auth

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"syscall"
	"time"
)

// Reloader is something read from files that can be read again: the
// policy's credentials, the TLS certificate.
type Reloader interface {
	Files() []string
	Reload() error
}

// Watcher reloads each of its items when one of the item's files
// changes (size, time or inode: an editor's rename and Kubernetes' swap
// of a Secret's symlink both show).
type Watcher struct {
	items []Reloader
	last  []string
}

// NewWatcher takes the files' state now, as the items were loaded.
func NewWatcher(items ...Reloader) *Watcher {
	w := &Watcher{items: items, last: make([]string, len(items))}
	for i, it := range items {
		w.last[i] = stamp(it.Files())
	}
	return w
}

// Run checks every interval until ctx ends. A failed reload leaves the
// item as it was and is logged; it is tried again on the next change.
func (w *Watcher) Run(ctx context.Context, interval time.Duration, log *slog.Logger) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		for i, it := range w.items {
			if s := stamp(it.Files()); s != w.last[i] {
				w.last[i] = s
				ReloadAll(log, "changed", it)
			}
		}
	}
}

// ReloadAll reloads each item now (on SIGHUP, or after a change) and logs
// the outcome.
func ReloadAll(log *slog.Logger, why string, items ...Reloader) {
	for _, it := range items {
		files := strings.Join(it.Files(), ", ")
		if err := it.Reload(); err != nil {
			log.Error("reloading credentials failed; the previous ones stay in force", "files", files, "why", why, "error", err.Error())
			continue
		}
		log.Info("reloaded", "files", files, "why", why)
	}
}

// stamp sums up the files' state; a missing file stamps as missing.
func stamp(files []string) string {
	var b strings.Builder
	for _, f := range files {
		st, err := os.Stat(f)
		if err != nil {
			b.WriteString("missing;")
			continue
		}
		var ino uint64
		if sys, ok := st.Sys().(*syscall.Stat_t); ok {
			ino = sys.Ino
		}
		fmt.Fprintf(&b, "%d %d %d;", st.ModTime().UnixNano(), st.Size(), ino)
	}
	return b.String()
}
