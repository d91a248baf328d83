package server

import (
	"cmp"
	"errors"
	"runtime"
	"runtime/metrics"
	"sync"

	"github.com/modelserve/modelserve/model"
)

// A large body's rows are decoded on several cores: the bytes after the
// first row are cut into parts at what looks like a row boundary (`],[`),
// each part is decoded by its own goroutine into its own range of rows
// of the same tensors, and the parts are then moved together. A cut is
// only a guess (the bytes `],[` also occur inside nested arrays and
// strings); a part's rows count only if the part before it, read from a
// known row boundary, ended exactly where the cut is. Any doubt — a cut
// inside a row, a part with more rows than its room, any mistake in the
// body — throws the parallel work away and the rows are read in order,
// as they always were, so the result and every error are the same.
const (
	// partBytes is the least a part holds: a tenth of a millisecond or
	// more of decoding, well above the cost of a goroutine.
	partBytes = 64 << 10
	// maxParts bounds the goroutines one body takes.
	maxParts = 16
)

var errPartFull = errors.New("a part of the body holds more rows than its room")

// idleCores is how many more goroutines could run now without waiting:
// GOMAXPROCS less the goroutines running or waiting to run.
func idleCores() int {
	s := [...]metrics.Sample{{Name: "/sched/goroutines/running:goroutines"}, {Name: "/sched/goroutines/runnable:goroutines"}}
	metrics.Read(s[:])
	busy := 0
	for _, v := range s {
		if v.Value.Kind() == metrics.KindUint64 {
			busy += int(v.Value.Uint64())
		}
	}
	return runtime.GOMAXPROCS(0) - busy
}

// inParallel decodes the rows from the one the scanner stands on (row 1)
// to the end of "data" on the idle cores, when the body is large enough;
// rowBytes is the first row's size. It reports false, having changed
// nothing the rows read in order would not write again, when it did not.
func (d *decoding) inParallel(s *scanner, rowBytes int) bool {
	least, most := cmp.Or(d.opts.partBytes, partBytes), d.opts.parts
	rest := len(s.b) - s.i
	if rest < 2*least || most == 1 {
		return false
	}
	for _, c := range d.cols {
		if c.set == nil {
			return false // an input the first row did not size
		}
	}
	if most == 0 {
		most = min(maxParts, 1+idleCores())
	}
	n := min(rest/least, most)
	if n < 2 {
		return false
	}
	cuts := []int{s.i}
	for k := 1; k < n; k++ {
		at := rowCut(s.b, max(s.i+k*rest/n, cuts[len(cuts)-1]+1))
		if at < 0 {
			break
		}
		cuts = append(cuts, at)
	}
	if len(cuts) < 2 {
		return false
	}
	// Room per part: its bytes over the first row's, with a margin for
	// rows shorter than the first.
	parts := make([]*decoding, len(cuts))
	base := len(d.b.rowIDs)
	for k, at := range cuts {
		end := len(s.b)
		if k+1 < len(cuts) {
			end = cuts[k+1]
		}
		room := (end-at)/max(rowBytes, 1)*5/4 + 16
		parts[k] = &decoding{decoder: d.decoder, opts: d.opts, order: d.order, inPart: true, first: base, capRows: base + room,
			b: &batch{rowIDs: make([]int64, 0, room)}}
		base += room
	}
	if base > d.capRows {
		d.grow(base)
	}
	for _, p := range parts {
		p.cols, p.b.inputs = d.cols, d.b.inputs
	}
	ends := make([]int, len(parts))
	oks := make([]bool, len(parts))
	var wg sync.WaitGroup
	for k := 1; k < len(parts); k++ {
		wg.Go(func() { ends[k], oks[k] = parts[k].readPart(s.b, cuts, k) })
	}
	ends[0], oks[0] = parts[0].readPart(s.b, cuts, 0)
	wg.Wait()
	for _, ok := range oks {
		if !ok {
			return false
		}
	}
	// Move the parts' rows together, after the rows read before them.
	for _, p := range parts {
		at, got := len(d.b.rowIDs), len(p.b.rowIDs)
		for _, t := range d.b.inputs {
			model.CopyRows(t.SliceRows(at, at+got), t.SliceRows(p.first, p.first+got))
		}
		d.b.rowIDs = append(d.b.rowIDs, p.b.rowIDs...)
		// A part's echoes are kept at its rows' places in its room.
		if len(p.b.echo) > p.first {
			for len(d.b.echo) < at {
				d.b.echo = append(d.b.echo, nil)
			}
			d.b.echo = append(d.b.echo, p.b.echo[p.first:]...)
			for len(d.b.echo) < at+got {
				d.b.echo = append(d.b.echo, nil)
			}
		}
	}
	s.i = ends[len(ends)-1]
	d.b.parts = len(parts)
	return true
}

// readPart decodes the rows of part k (from cuts[k] to cuts[k+1], or to the
// end of "data" for the last) into rows d.first onward; it returns where
// it stopped (the last part: at the closing ']') and whether every row
// read cleanly and the part ended exactly at the next cut.
func (d *decoding) readPart(b []byte, cuts []int, k int) (int, bool) {
	s := &scanner{b: b, i: cuts[k]}
	end := len(b)
	if k+1 < len(cuts) {
		end = cuts[k+1]
	}
	var y yielder
	yielded := s.i
	for r := d.first; ; r++ {
		if s.i-yielded >= yieldBytes {
			y.yieldIfWaiting()
			yielded = s.i
		}
		if d.dataRow(s, r) != nil {
			return 0, false
		}
		if s.peek() == ']' {
			return s.i, k+1 == len(cuts)
		}
		if !s.consume(',') {
			return 0, false
		}
		if s.ws(); s.i >= end {
			return s.i, s.i == end && k+1 < len(cuts)
		}
	}
}

// rowCut is the position of the first '[' at or after at that follows
// `]` and `,` (white space between allowed): the start of a row, if at
// stands between rows of "data"; -1 if there is none.
func rowCut(b []byte, at int) int {
	for i := at; i < len(b); i++ {
		if b[i] != '[' {
			continue
		}
		j := i - 1
		for j >= at && isSpace(b[j]) {
			j--
		}
		if j < at || b[j] != ',' {
			continue
		}
		for j--; j >= at && isSpace(b[j]); j-- {
		}
		if j >= at && b[j] == ']' {
			return i
		}
	}
	return -1
}
