package admission

import (
	"testing"
	"time"
)

func TestParseBatchDelay(t *testing.T) {
	tests := []struct {
		in   string
		want BatchDelay
		ok   bool
	}{
		{"auto", AutoDelay, true},
		{"AUTO", AutoDelay, true},
		{"250us", BatchDelay{Fixed: 250 * time.Microsecond}, true},
		{"0", BatchDelay{}, true},
		{"-1ms", BatchDelay{}, false},
		{"soon", BatchDelay{}, false},
	}
	for _, tt := range tests {
		got, err := ParseBatchDelay(tt.in)
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseBatchDelay(%q) = %v, %v", tt.in, got, err)
		}
	}
	if s := (BatchDelay{Fixed: 3 * time.Millisecond}).String(); s != "3ms" {
		t.Errorf("String() = %q", s)
	}
}

func TestFillDelay_autoWaitsOnlyWhileRowsKeepComing(t *testing.T) {
	start := time.Unix(1000, 0)
	// arrive returns a queue that saw one request of rows every gap.
	arrive := func(cfg Config, gap time.Duration, rows int) (*Queue, time.Time) {
		q := &Queue{cfg: cfg}
		now := start
		for range 50 {
			q.arrivals.observe(now, rows)
			now = now.Add(gap)
		}
		return q, now.Add(-gap)
	}
	auto := Config{MaxBatchDelay: AutoDelay, CallFixedCost: 60 * time.Microsecond}
	tests := []struct {
		name string
		cfg  Config
		gap  time.Duration
		rows int
		// quiet is how long after the last arrival fillDelay is asked.
		quiet time.Duration
		want  time.Duration
	}{
		{"busy: four times the call's fixed cost", auto, 20 * time.Microsecond, 1, 0, 240 * time.Microsecond},
		{"idle: a row every 10ms is not worth waiting for", auto, 10 * time.Millisecond, 1, 0, 0},
		{"big rare requests: rows, not requests, count", auto, time.Millisecond, 64, 0, 240 * time.Microsecond},
		{"gone quiet: the silence lowers the rate at once", auto, 20 * time.Microsecond, 1, 50 * time.Millisecond, 0},
		{"capped", Config{MaxBatchDelay: AutoDelay, CallFixedCost: 5 * time.Millisecond}, 20 * time.Microsecond, 1, 0, autoCap},
		{"cost unknown: no wait", Config{MaxBatchDelay: AutoDelay}, 20 * time.Microsecond, 1, 0, 0},
		{"fixed delay, whatever the load", Config{MaxBatchDelay: BatchDelay{Fixed: time.Millisecond}}, time.Second, 1, 0, time.Millisecond},
		{"zero: never", Config{}, 20 * time.Microsecond, 1, 0, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			q, last := arrive(tt.cfg, tt.gap, tt.rows)
			if got := q.fillDelay(last.Add(tt.quiet)); got != tt.want {
				t.Errorf("fillDelay = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestFillDelay_requestsBeingDecodedCount(t *testing.T) {
	q := &Queue{cfg: Config{MaxBatchDelay: AutoDelay, CallFixedCost: 60 * time.Microsecond}}
	now := time.Unix(1000, 0)
	if got := q.fillDelay(now); got != 0 {
		t.Fatalf("nothing arriving: %v", got)
	}
	q.decoding = 3 // admitted, their rows a moment away
	if got := q.fillDelay(now); got != 240*time.Microsecond {
		t.Errorf("with rows being decoded: %v", got)
	}
}
