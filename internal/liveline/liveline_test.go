package liveline

import (
	"bytes"
	"testing"
)

func TestLine(t *testing.T) {
	tests := []struct {
		name     string
		terminal bool
		want     string
	}{
		{"a terminal redraws in place and clears before a line", true, "\r\033[K1 row\r\033[K2 rows\r\033[Kdone\n\r\033[K3 rows\r\033[K"},
		{"elsewhere only the lines are written", false, "done\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var b bytes.Buffer
			l := New(&b, tt.terminal)
			l.Draw("1 row")
			l.Draw("2 rows")
			l.Print("done")
			l.Draw("3 rows")
			l.Clear()
			l.Clear() // nothing left to clear
			if b.String() != tt.want {
				t.Errorf("wrote %q, want %q", b.String(), tt.want)
			}
		})
	}
	if IsTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
}
