package logbuf

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the flusher and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestWriter(t *testing.T) {
	out := &syncBuffer{}
	w := New(out, time.Hour, 64)
	log := slog.New(NewHandler(slog.NewTextHandler(w, nil), w))
	log.Info("first")
	if out.String() != "" {
		t.Fatalf("an info line was written at once: %q", out.String())
	}
	log.Warn("trouble")
	if s := out.String(); !strings.Contains(s, "msg=first") || !strings.Contains(s, "msg=trouble") {
		t.Fatalf("a warning did not flush what waited: %q", s)
	}
	log.Info("a line long enough to fill the buffer of sixty-four bytes")
	log.Info("next")
	if !strings.Contains(out.String(), "sixty-four") {
		t.Fatalf("a full buffer was not flushed: %q", out.String())
	}
	log.Info(strings.Repeat("x", 100))
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if s := out.String(); !strings.Contains(s, "msg=next") || !strings.Contains(s, strings.Repeat("x", 100)) {
		t.Fatalf("Close lost lines: %q", s)
	}

	out2 := &syncBuffer{}
	w2 := New(out2, 10*time.Millisecond, 1<<16)
	defer w2.Close()
	w2.Write([]byte("tick\n"))
	deadline := time.Now().Add(2 * time.Second)
	for out2.String() == "" && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if out2.String() != "tick\n" {
		t.Fatalf("the interval did not flush: %q", out2.String())
	}
}
