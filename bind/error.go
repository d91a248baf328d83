package bind

import (
	"errors"
	"fmt"
	"strings"
)

// Error is a problem with what a caller sent, worded for the caller: it
// names the row (and the row's own id, when the rows have ids apart from
// their numbers) and the column at fault when there are some.
type Error struct {
	Row    int64  // the row's number, or -1
	ID     string // the row's id, or ""
	Column string // the column's name, or ""
	Err    error
}

// Errorf is an Error for row (-1: none) and column ("" : none).
func Errorf(row int64, column, format string, args ...any) *Error {
	return &Error{Row: row, Column: column, Err: fmt.Errorf(format, args...)}
}

func (e *Error) Error() string {
	var b strings.Builder
	if e.Row >= 0 {
		fmt.Fprintf(&b, "row %d", e.Row)
		if e.ID != "" {
			fmt.Fprintf(&b, " (id %s)", e.ID)
		}
	}
	if e.Column != "" {
		if b.Len() > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "column %q", e.Column)
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// AtRow names the row of an error that does not name one yet; an error
// that is not an Error becomes one.
func AtRow(row int64, err error) error {
	var e *Error
	if errors.As(err, &e) {
		if e.Row < 0 {
			e.Row = row
		}
		return e
	}
	return &Error{Row: row, Err: err}
}
