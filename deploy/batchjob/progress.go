package batchjob

import (
	"fmt"
	"io"
	"math"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/modelserve/modelserve/internal/liveline"
)

// progress reports a run: on a terminal, a line redrawn in place (rows,
// rows/s, ETA); elsewhere, a plain line every few seconds.
type progress struct {
	out   *liveline.Line
	start time.Time
	every time.Duration

	done  atomic.Int64 // rows in finished chunks, including those of an earlier run
	ran   atomic.Int64 // rows this run has put through the model
	read  atomic.Int64 // rows the reader has passed (read or skipped)
	frac  atomic.Uint64
	total atomic.Int64 // the input's rows when known, else -1

	drawing bool // a goroutine redraws it (there is somewhere to draw)
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newProgress(w io.Writer, terminal bool) *progress {
	p := &progress{out: liveline.New(w, terminal), start: time.Now(), every: 10 * time.Second, stop: make(chan struct{})}
	if terminal {
		p.every = 200 * time.Millisecond
	}
	p.total.Store(-1)
	if w == nil {
		return p
	}
	p.drawing = true
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.every)
		defer t.Stop()
		for {
			select {
			case <-p.stop:
				return
			case <-t.C:
				p.draw()
			}
		}
	}()
	return p
}

// position records how far the reader has got.
func (p *progress) position(rows int64, fraction float64, total int64) {
	p.read.Store(rows)
	p.frac.Store(math.Float64bits(fraction))
	p.total.Store(total)
}

// line is the report: "412,000 / 1,000,000 rows  41%  95,120 rows/s  ETA 6s".
func (p *progress) line(now time.Time) string {
	done, ran := p.done.Load(), p.ran.Load()
	elapsed := now.Sub(p.start)
	total, approx := p.total.Load(), ""
	if f := math.Float64frombits(p.frac.Load()); total < 0 && f > 0 {
		total, approx = int64(float64(p.read.Load())/f), "~"
	}
	rate := float64(ran) / elapsed.Seconds()
	s := group(done) + " rows"
	if total > 0 {
		s = fmt.Sprintf("%s / %s%s rows  %3d%%", group(done), approx, group(total), min(100, done*100/total))
	}
	s += fmt.Sprintf("  %s rows/s", group(int64(math.Round(rate))))
	if total > 0 && rate > 0 && done < total {
		s += "  ETA " + time.Duration(float64(total-done)/rate*float64(time.Second)).Round(time.Second).String()
	}
	return s
}

func (p *progress) draw() {
	if p.out.Terminal() {
		p.out.Draw("  " + p.line(time.Now()))
		return
	}
	p.out.Print("progress: " + p.line(time.Now()))
}

// finish stops the redraws and clears the live line.
func (p *progress) finish() {
	if !p.drawing {
		return
	}
	close(p.stop)
	p.wg.Wait()
	p.out.Clear()
}

// group writes n with thousands separators.
func group(n int64) string {
	s := strconv.FormatInt(n, 10)
	if n < 0 {
		return "-" + group(-n)
	}
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}
