// Package logbuf batches a server's log lines into few writes: a line per
// request (the audit line) must not cost a system call per request. Lines
// are written within a flush interval, at once when the buffer fills, and
// at once after a warning or an error, so what goes wrong shows without
// delay.
package logbuf

import (
	"context"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Writer buffers whole writes (slog writes a line at a time) for out.
type Writer struct {
	out  io.Writer
	max  int
	mu   sync.Mutex
	buf  []byte
	stop chan struct{}
	done chan struct{}
}

// New starts a writer that flushes every interval, or when max bytes wait.
func New(out io.Writer, interval time.Duration, max int) *Writer {
	w := &Writer{out: out, max: max, buf: make([]byte, 0, max), stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-w.stop:
				return
			case <-t.C:
				w.Flush()
			}
		}
	}()
	return w
}

// Write keeps p for the next flush; a full buffer is flushed first.
func (w *Writer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf)+len(p) > w.max {
		if err := w.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > w.max {
			return w.out.Write(p)
		}
	}
	w.buf = append(w.buf, p...)
	return len(p), nil
}

// Flush writes what waits.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushLocked()
}

func (w *Writer) flushLocked() error {
	if len(w.buf) == 0 {
		return nil
	}
	_, err := w.out.Write(w.buf)
	w.buf = w.buf[:0]
	return err
}

// Close stops the flusher and writes what waits.
func (w *Writer) Close() error {
	close(w.stop)
	<-w.done
	return w.Flush()
}

// Handler writes through a Writer and flushes it after a record at
// warning level or above.
type Handler struct {
	slog.Handler
	w *Writer
}

// NewHandler wraps h, which writes to w.
func NewHandler(h slog.Handler, w *Writer) *Handler { return &Handler{Handler: h, w: w} }

// Handle writes the record, and flushes for a warning or an error.
func (h *Handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= slog.LevelWarn {
		if ferr := h.w.Flush(); err == nil {
			err = ferr
		}
	}
	return err
}

// WithAttrs and WithGroup keep the flushing.
func (h *Handler) WithAttrs(as []slog.Attr) slog.Handler {
	return &Handler{Handler: h.Handler.WithAttrs(as), w: h.w}
}

func (h *Handler) WithGroup(name string) slog.Handler {
	return &Handler{Handler: h.Handler.WithGroup(name), w: h.w}
}
