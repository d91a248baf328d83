package admission

import (
	"fmt"
	"math"
	"strings"
	"time"
)

// Priority orders requests: higher is served first and shed last.
type Priority int

// Priorities, lowest first; the zero value is Normal.
const (
	Low Priority = iota - 1
	Normal
	High
)

// priorities is how many there are; idx is a priority's place in a list
// of them, lowest first.
const priorities = int(High-Low) + 1

func (p Priority) idx() int { return int(p - Low) }

func (p Priority) String() string {
	switch p {
	case Low:
		return "low"
	case High:
		return "high"
	}
	return "normal"
}

// ParsePriority reads high, normal or low.
func ParsePriority(s string) (Priority, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "high":
		return High, nil
	case "normal", "":
		return Normal, nil
	case "low":
		return Low, nil
	}
	return Normal, fmt.Errorf("priority %q: give high, normal or low", s)
}

// shedAt is the share of the wait target past which a priority is shed:
// low first, at half the target; high last, at twice it.
func (p Priority) shedAt() float64 {
	switch p {
	case Low:
		return 0.5
	case High:
		return 2
	}
	return 1
}

// Arrival is what admission knows of a request before its body is parsed.
type Arrival struct {
	Bytes    int64
	Priority Priority
	// Caller names who sends it (a principal, a query, an address), for
	// the fair share of a crowded queue; "" shares one name.
	Caller string
}

// costModel learns what one call costs: a fixed part and a part per row,
// from the calls actually run, so it follows a model that slows down or
// speeds up. The parts are fitted by least squares over exponentially
// weighted sums only when the calls' sizes tell them apart clearly (a
// slope well above its own error, a fixed part not below zero);
// otherwise the calls say only how much slower or faster the model runs
// than believed, and both parts are scaled by that, keeping the shares
// warm-up measured. A slope guessed from a few calls of 1 to 4 rows and
// a noisy machine would otherwise be multiplied by every row of a large
// request queued later (4096 rows of 3 ms each predicted for a model
// that ran them in 0.2 s).
type costModel struct {
	fixed, perRow time.Duration
	// Weighted sums of rows (x) and seconds (y).
	w, sx, sy, sxx, sxy, syy float64
}

// costDecay is how much each new call weighs against the history;
// costClip bounds how many times the prediction one call may count as;
// slopeSure is how many times its standard error a fitted slope must be.
const (
	costDecay = 0.05
	costClip  = 4
	slopeSure = 3
	// The least spread of sizes (rows, as a standard deviation) and the
	// least weight of calls a fit needs.
	minSpread   = 4
	minFitCalls = 8
	// priorCalls is how many calls the cost a model starts from weighs.
	priorCalls = 4
)

func (c *costModel) observe(rows int, d time.Duration) {
	// One call far slower than expected (its thread descheduled, a page
	// fault, a neighbour's burst) says little about the next: it counts
	// as at most costClip times the prediction, so a lasting slowdown is
	// learned in a few dozen calls and a single outlier cannot multiply
	// every predicted wait (and refuse a queue's worth of requests).
	if pred := c.call(rows); pred > 0 && d > costClip*pred {
		d = costClip * pred
	}
	x, y := float64(rows), d.Seconds()
	if pred := c.call(rows).Seconds(); c.w == 0 && pred > 0 {
		// What warm-up (or the version replaced) measured counts as a
		// few calls of this size: the first call run does not replace it.
		c.w, c.sx, c.sy = priorCalls, priorCalls*x, priorCalls*pred
		c.sxx, c.sxy, c.syy = priorCalls*x*x, priorCalls*x*pred, priorCalls*pred*pred
	}
	k := 1 - costDecay
	c.w = k*c.w + 1
	c.sx = k*c.sx + x
	c.sy = k*c.sy + y
	c.sxx = k*c.sxx + x*x
	c.sxy = k*c.sxy + x*y
	c.syy = k*c.syy + y*y
	mx, my := c.sx/c.w, c.sy/c.w
	if fixed, slope, ok := c.fit(mx, my); ok {
		c.fixed, c.perRow = seconds(fixed), seconds(slope)
		return
	}
	// Calls of about one size: scale both parts to the mean call.
	pred := c.fixed.Seconds() + mx*c.perRow.Seconds()
	if pred <= 0 {
		c.fixed, c.perRow = seconds(my), 0
		return
	}
	scale := my / pred
	c.fixed = seconds(c.fixed.Seconds() * scale)
	c.perRow = seconds(c.perRow.Seconds() * scale)
}

// fit is the least-squares line through the weighted calls, when their
// sizes vary enough to tell its parts apart.
func (c *costModel) fit(mx, my float64) (fixed, slope float64, ok bool) {
	// A spread of a few rows over a handful of calls says nothing of
	// what a row costs in a batch of hundreds.
	varx := c.sxx/c.w - mx*mx
	if varx < minSpread*minSpread || c.w < minFitCalls {
		return 0, 0, false
	}
	slope = (c.sxy/c.w - mx*my) / varx
	fixed = my - slope*mx
	if slope <= 0 || fixed < 0 {
		return 0, 0, false
	}
	// The residual variance, and the slope's standard error over about
	// w calls.
	resid := max(c.syy/c.w-my*my-slope*slope*varx, 0)
	if se := math.Sqrt(resid / (c.w * varx)); slope < slopeSure*se {
		return 0, 0, false
	}
	return fixed, slope, true
}

func seconds(s float64) time.Duration {
	if math.IsNaN(s) || s < 0 {
		return 0
	}
	return time.Duration(s * float64(time.Second))
}

// call is what a call of rows rows costs.
func (c *costModel) call(rows int) time.Duration {
	return c.fixed + time.Duration(rows)*c.perRow
}

// work is the time rows take on one worker, in calls of at most batch rows.
func (c *costModel) work(rows, batch int) time.Duration {
	if rows <= 0 {
		return 0
	}
	calls := (rows + batch - 1) / batch
	return time.Duration(calls)*c.fixed + time.Duration(rows)*c.perRow
}

// efficientCall is how many times its fixed part a call must last to be
// worth making: its fixed cost is then an eighth of it at most.
const efficientCall = 8

// batchRows is the most rows one call takes now, for a batch led by rows
// of priority p: MaxBatchRows, or fewer when the learned cost says a full
// batch would last longer than half the wait target (or than
// efficientCall times the fixed part, for a model whose calls cost
// much): an accepted request then waits up to the target and runs in a
// call half as long, instead of in a full batch of a slow model; both
// add to its answer. The rows lost per call cost little: past that size
// the cost is mostly per row.
//
// While high-priority requests come (one in the last highWindow), a batch
// of lower priority is cut to a tenth of the target: a call is never
// preempted, so a high-priority request that finds the workers busy waits
// for the shortest of their calls, and that must be short.
// Called with q.mu held.
func (q *Queue) batchRows(p Priority) int {
	allowed := q.baseTarget() / callShare
	if p < High && q.highRecent(q.cfg.Clock()) {
		allowed = q.baseTarget() / 10
	}
	return q.rowsFitting(max(allowed, efficientCall*q.fixedCost()))
}

// callShare: a call lasts at most the wait target over callShare.
const callShare = 2

// rideAlong is how much longer lower-priority rows may make the call of
// high-priority ones they join: a quarter. A model whose calls cost
// mostly a fixed part takes many along for free; one whose rows cost
// much takes few or none.
const rideAlong = 1.25

// joinLimit is the most rows a batch led by leadRows rows of priority
// lead may reach with rows of the lower priority k. Called with q.mu
// held.
func (q *Queue) joinLimit(lead, k Priority, leadRows int) int {
	limit := q.batchRows(k)
	if lead == High {
		own := q.cost.call(leadRows)
		limit = min(limit, max(leadRows, q.rowsFitting(time.Duration(float64(own)*rideAlong))))
	}
	return limit
}

// rowsFitting is the most rows, up to MaxBatchRows and at least one, that
// one call runs within d at the learned cost. Called with q.mu held.
func (q *Queue) rowsFitting(d time.Duration) int {
	n := q.cfg.MaxBatchRows
	if !q.coalesce || q.cost.perRow <= 0 || q.cost.call(n) <= d {
		return n
	}
	return max(1, min(n, int((d-q.cost.fixed)/q.cost.perRow)))
}

// highWindow is how long after a high-priority request the batches of
// lower priority stay short and a worker is kept for high priority.
const highWindow = time.Second

// highRecent says whether high-priority requests are coming: one was
// queued in the last highWindow. Called with q.mu held.
func (q *Queue) highRecent(now time.Time) bool {
	return !q.highSeen.IsZero() && now.Sub(q.highSeen) < highWindow
}

// workersFor is how many workers may run rows of priority p now: all,
// but while high-priority requests come, on more than one worker, lower
// priorities leave one free for them. A high-priority request then finds
// a worker instead of waiting for a call (never preempted) to end, and
// runs on a machine with one call fewer at work; lower priorities lose
// a worker's share only while high-priority requests come. Called with
// q.mu held.
func (q *Queue) workersFor(p Priority) int {
	n := q.runner.Size()
	if p < High && n > 1 && q.highRecent(q.cfg.Clock()) {
		n--
	}
	return n
}

// controller tightens admission when the measured sojourn stays above
// target for a whole interval (the model slowed down, a noisy
// neighbour, a throttled GPU) and loosens it again once it is below: as
// CoDel does, it looks at the smallest sojourn of each interval, which
// is above target only when the queue never drained to it. Each
// priority is held to its own share of the target (low to half), and
// apart: high-priority rows, served first, drain at once even while the
// rows behind them wait too long.
type controller struct {
	factor   float64 // the share of the target admission allows, in (0, 1]
	start    time.Time
	minSeen  [priorities]time.Duration
	seen     [priorities]bool
	interval time.Duration
}

const (
	minFactor = 0.05
	tighten   = 0.7
	loosen    = 1.5
)

// observe takes the sojourn of one piece of priority p at time now, and
// at the end of each interval adjusts the factor.
func (c *controller) observe(now time.Time, p Priority, sojourn, target time.Duration) {
	if i := p.idx(); !c.seen[i] || sojourn < c.minSeen[i] {
		c.minSeen[i], c.seen[i] = sojourn, true
	}
	if now.Sub(c.start) < c.interval {
		return
	}
	above := false
	for k := Low; k <= High; k++ {
		if c.seen[k.idx()] && c.minSeen[k.idx()] > time.Duration(float64(target)*k.shedAt()) {
			above = true
		}
	}
	if above {
		c.factor = max(minFactor, c.factor*tighten)
	} else {
		c.factor = min(1, c.factor*loosen)
	}
	c.start, c.seen = now, [priorities]bool{}
}

// idle loosens the factor once an interval passes with the queue empty:
// no sojourn is measured then, and a tightened target must not stay so.
func (c *controller) idle(now time.Time, empty bool) {
	if empty && c.seen == [priorities]bool{} && now.Sub(c.start) >= c.interval {
		c.factor = min(1, c.factor*loosen)
		c.start = now
	}
}

// pendingLen counts the pieces waiting, at every priority; called with
// q.mu held.
func (q *Queue) pendingLen() int {
	n := 0
	for k := range q.pending {
		n += q.pending[k].Len()
	}
	return n
}
