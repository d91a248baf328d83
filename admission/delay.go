package admission

import (
	"fmt"
	"strings"
	"time"
)

// BatchDelay is how long a free worker may wait for more rows when its
// batch is not full: a fixed time, or Auto. The zero value never waits.
type BatchDelay struct {
	Auto  bool
	Fixed time.Duration
}

// AutoDelay waits while it pays: a few times the model's fixed cost per
// ONNX Runtime call (Config.CallFixedCost, measured at load), and only
// when rows arrive fast enough that at least one more is expected
// meanwhile. At low load it never waits; under load it turns many tiny
// calls into fewer full ones.
var AutoDelay = BatchDelay{Auto: true}

const (
	// autoFactor × the fixed cost of a call is the auto wait: the wait
	// costs the rows already there a little latency, each row it gathers
	// saves running the fixed cost again.
	autoFactor = 4
	autoCap    = 2 * time.Millisecond
)

// ParseBatchDelay reads "auto" or a duration ("250us", "2ms", "0").
func ParseBatchDelay(s string) (BatchDelay, error) {
	if strings.EqualFold(s, "auto") {
		return AutoDelay, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return BatchDelay{}, fmt.Errorf("batch delay %q: write auto or a duration like 250us", s)
	}
	return BatchDelay{Fixed: d}, nil
}

func (d BatchDelay) String() string {
	if d.Auto {
		return "auto"
	}
	return d.Fixed.String()
}

// arrivals tracks how fast rows arrive.
type arrivals struct {
	last     time.Time
	interval float64 // EWMA of seconds between requests
	rows     float64 // EWMA of rows per request
}

func (a *arrivals) observe(now time.Time, rows int) {
	switch gap := now.Sub(a.last).Seconds(); {
	case a.last.IsZero():
		a.rows = float64(rows)
	case a.interval == 0:
		a.interval, a.rows = gap, 0.9*a.rows+0.1*float64(rows)
	default:
		a.interval = 0.9*a.interval + 0.1*gap
		a.rows = 0.9*a.rows + 0.1*float64(rows)
	}
	a.last = now
}

// rate is rows per second; a silence longer than the usual interval
// lowers it at once.
func (a *arrivals) rate(now time.Time) float64 {
	if a.last.IsZero() || a.interval == 0 {
		return 0
	}
	return a.rows / max(a.interval, now.Sub(a.last).Seconds())
}
