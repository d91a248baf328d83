package loadgen

import (
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"
)

// serveStatuses answers every POST with the next of a fixed cycle of
// statuses and counts the requests.
func serveStatuses(t *testing.T, cycle ...int) (url string, requests *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	requests = &atomic.Int64{}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := requests.Add(1)
		w.WriteHeader(cycle[int(n-1)%len(cycle)])
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return "http://" + ln.Addr().String() + "/predict", requests
}

func TestClosed_countsEachAnswerAndBacksOffAfter429(t *testing.T) {
	tests := []struct {
		name    string
		cycle   []int
		backoff time.Duration
		check   func(t *testing.T, s *Stats, sent int64)
	}{
		{"only 200s", []int{200}, 0, func(t *testing.T, s *Stats, sent int64) {
			if len(s.OK) == 0 || len(s.Rejected) != 0 || s.Others() != 0 || s.OKPerSecond() <= 0 {
				t.Errorf("got %d ok, %d rejected, %d others", len(s.OK), len(s.Rejected), s.Others())
			}
		}},
		{"429s and 500s kept apart", []int{200, 429, 500}, 0, func(t *testing.T, s *Stats, sent int64) {
			if len(s.OK) == 0 || len(s.Rejected) == 0 || s.Others() == 0 || s.Statuses[500] != s.Others() {
				t.Errorf("got statuses %v, others %d", s.Statuses, s.Others())
			}
		}},
		{"a 429 waits for the backoff", []int{429}, 50 * time.Millisecond, func(t *testing.T, s *Stats, sent int64) {
			// 2 callers for about 0.3 s of warm-up and window, 50 ms apart.
			if sent > 16 {
				t.Errorf("%d requests sent in 0.3 s by 2 callers backing off 50 ms", sent)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			url, requests := serveStatuses(t, tt.cycle...)
			tg, err := NewTarget(url, 2)
			if err != nil {
				t.Fatal(err)
			}
			tg.Backoff = tt.backoff
			var opened, closed bool
			s := tg.Closed([]byte(`{}`), 2, 100*time.Millisecond, 200*time.Millisecond, func(open bool) {
				opened, closed = opened || open, closed || !open
			})
			if !opened || !closed || s.Elapsed < 200*time.Millisecond {
				t.Errorf("window: opened %v, closed %v, elapsed %s", opened, closed, s.Elapsed)
			}
			tt.check(t, s, requests.Load())
		})
	}
}

func TestNewTarget_refusesWhatIsNotAnHTTPURL(t *testing.T) {
	for _, u := range []string{"", "localhost:8080/predict", "ftp://x/predict", "http:///predict", "::"} {
		if _, err := NewTarget(u, 1); err == nil {
			t.Errorf("NewTarget(%q) accepted it", u)
		}
	}
}

func TestPercentile(t *testing.T) {
	ds := []time.Duration{5, 1, 4, 2, 3}
	for _, tt := range []struct {
		p    float64
		want time.Duration
	}{{0, 1}, {0.5, 3}, {0.99, 5}, {1, 5}} {
		if got := Percentile(ds, tt.p); got != tt.want {
			t.Errorf("Percentile(%v) = %v, want %v", tt.p, got, tt.want)
		}
	}
	if Percentile(nil, 0.5) != 0 {
		t.Error("Percentile of nothing should be 0")
	}
}
