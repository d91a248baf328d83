package batchjob

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestProgress_rowsRateAndTimeLeft(t *testing.T) {
	tests := []struct {
		name            string
		done, ran, read int64
		fraction        float64
		total           int64
		want            string
	}{
		{"a Parquet input knows its rows", 400_000, 100_000, 420_000, 0.42, 1_000_000,
			"400,000 / 1,000,000 rows   40%  10,000 rows/s  ETA 1m0s"},
		{"a CSV input's total is estimated from the bytes read", 30_000, 30_000, 50_000, 0.25, -1,
			"30,000 / ~200,000 rows   15%  3,000 rows/s  ETA 57s"},
		{"nothing read yet", 0, 0, 0, 0, -1, "0 rows  0 rows/s"},
		{"done", 50, 50, 50, 1, 50, "50 / 50 rows  100%  5 rows/s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProgress(nil, false)
			now := time.Now()
			p.start = now.Add(-10 * time.Second)
			p.done.Store(tt.done)
			p.ran.Store(tt.ran)
			p.position(tt.read, tt.fraction, tt.total)
			if got := p.line(now); got != tt.want {
				t.Errorf("line %q, want %q", got, tt.want)
			}
		})
	}
}

func TestProgress_redrawnOnATerminalOnly(t *testing.T) {
	for _, terminal := range []bool{true, false} {
		var b bytes.Buffer
		p := newProgress(&b, terminal)
		p.position(10, 0.5, 20)
		p.done.Store(10)
		p.draw()
		p.finish()
		out := b.String()
		if terminal && (!strings.HasPrefix(out, "\r\033[K  10 / 20 rows") || !strings.HasSuffix(out, "\r\033[K")) {
			t.Errorf("terminal: %q, want a line redrawn in place and cleared at the end", out)
		}
		if !terminal && !strings.HasPrefix(out, "progress: 10 / 20 rows") {
			t.Errorf("not a terminal: %q, want plain lines", out)
		}
	}
}
