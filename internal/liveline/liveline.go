// Package liveline draws a status line that a terminal redraws in place
// (rows done, bytes pushed), and keeps it out of the way of the lines
// printed around it. Elsewhere (a file, a pipe) nothing is redrawn.
package liveline

import (
	"fmt"
	"io"
	"os"
	"sync"
)

// Line is one writer's status line; its methods may be called from any
// goroutine.
type Line struct {
	w        io.Writer
	terminal bool

	mu   sync.Mutex
	live bool // the status is on screen, with no newline after it
}

// New draws on w; terminal says whether w redraws in place (IsTerminal).
func New(w io.Writer, terminal bool) *Line { return &Line{w: w, terminal: terminal} }

// Terminal says whether the line is redrawn in place.
func (l *Line) Terminal() bool { return l.terminal }

// Draw shows s as the status, in place of the last one; off a terminal
// it does nothing.
func (l *Line) Draw(s string) {
	if !l.terminal || l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	fmt.Fprint(l.w, "\r\033[K"+s)
	l.live = true
}

// Print writes s as a line of its own, above the status (which the next
// Draw puts back).
func (l *Line) Print(s string) {
	if l.w == nil {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
	fmt.Fprintln(l.w, s)
}

// Clear takes the status off the screen.
func (l *Line) Clear() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.clear()
}

func (l *Line) clear() {
	if l.live {
		fmt.Fprint(l.w, "\r\033[K")
		l.live = false
	}
}

// IsTerminal reports whether w is a terminal, where a status line is
// redrawn in place.
func IsTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	info, err := f.Stat()
	return err == nil && info.Mode()&os.ModeCharDevice != 0
}
