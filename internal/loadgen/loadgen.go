// Package loadgen drives an HTTP endpoint with a closed or an open loop of
// requests and keeps what it saw: statuses, latencies, failures. The
// benchmarks and doctor --run measure the server with it.
package loadgen

import (
	"crypto/tls"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// Stats is what a load run saw in its measuring window.
type Stats struct {
	Elapsed  time.Duration
	Statuses map[int]int
	// ClientErrors are transport failures; Dropped are requests the
	// open loop could not even send (too many in flight).
	ClientErrors, Dropped int
	OK, Rejected          []time.Duration // latencies of 200s and 429s
	// OKRows sums the rows of the requests answered 200, for payloads
	// that say their rows.
	OKRows int64
	// RejectedFromSend times 429s from the moment the request was sent,
	// and RejectedBySize the same by the request's rows; Late is how far
	// behind schedule the open loop sent.
	RejectedFromSend, Late []time.Duration
	RejectedBySize         map[int][]time.Duration
	// RetryAfter holds the Retry-After of each 429 of an open loop.
	RetryAfter []string
}

func newStats() *Stats {
	return &Stats{Statuses: map[int]int{}, RejectedBySize: map[int][]time.Duration{}}
}

func (s *Stats) record(status int, err error, latency time.Duration, rows int) {
	if err != nil {
		s.ClientErrors++
		return
	}
	s.Statuses[status]++
	switch status {
	case fasthttp.StatusOK:
		s.OK = append(s.OK, latency)
		s.OKRows += int64(rows)
	case fasthttp.StatusTooManyRequests:
		s.Rejected = append(s.Rejected, latency)
	}
}

func (s *Stats) merge(o *Stats) {
	for k, v := range o.Statuses {
		s.Statuses[k] += v
	}
	s.ClientErrors += o.ClientErrors
	s.OKRows += o.OKRows
	s.OK = append(s.OK, o.OK...)
	s.Rejected = append(s.Rejected, o.Rejected...)
}

// OKPerSecond is the rate of answered requests.
func (s *Stats) OKPerSecond() float64 { return float64(len(s.OK)) / s.Elapsed.Seconds() }

// Others counts answers that are neither 200 nor 429, and failures.
func (s *Stats) Others() int {
	n := s.ClientErrors
	for code, c := range s.Statuses {
		if code != fasthttp.StatusOK && code != fasthttp.StatusTooManyRequests {
			n += c
		}
	}
	return n
}

// Percentile is the p-th (0..1) smallest duration, 0 for none.
func Percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

// Round rounds a latency to what a table shows: three or four digits.
func Round(d time.Duration) time.Duration {
	switch {
	case d >= time.Second:
		return d.Round(10 * time.Millisecond)
	case d >= time.Millisecond:
		return d.Round(10 * time.Microsecond)
	}
	return d.Round(time.Microsecond)
}

// Target is where requests go: a POST of a JSON body to an http URL.
type Target struct {
	client  *fasthttp.HostClient
	url     string
	headers [][2]string
	// Backoff is how long a closed-loop caller waits after a 429 before
	// it sends again, as a client that honours back-pressure does; 0
	// sends again at once.
	Backoff time.Duration
}

// NewTarget prepares a client for rawURL (http or https; tls, when not
// nil, configures the latter) with up to conns connections.
func NewTarget(rawURL string, conns int, tlsConfig ...*tls.Config) (*Target, error) {
	u, err := url.Parse(rawURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("load target %q: give an http:// or https://host:port/path URL", rawURL)
	}
	t := &Target{url: rawURL, client: &fasthttp.HostClient{Addr: u.Host, MaxConns: conns, ReadTimeout: 5 * time.Minute,
		WriteTimeout: time.Minute, MaxIdemponentCallAttempts: 1, IsTLS: u.Scheme == "https"}}
	if len(tlsConfig) > 0 {
		t.client.TLSConfig = tlsConfig[0]
	}
	return t, nil
}

// SetHeader adds a header every request carries (Authorization, say).
func (t *Target) SetHeader(key, value string) { t.headers = append(t.headers, [2]string{key, value}) }

// Request is a POST of body to the target; release it with
// fasthttp.ReleaseRequest.
func (t *Target) Request(body []byte) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI(t.url)
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	for _, h := range t.headers {
		req.Header.Set(h[0], h[1])
	}
	req.SetBodyRaw(body)
	return req
}

// Do sends one request.
func (t *Target) Do(req *fasthttp.Request, resp *fasthttp.Response) error {
	return t.client.Do(req, resp)
}

// Payload is a request body and the rows it holds.
type Payload struct {
	Body []byte
	Rows int
}

// Closed keeps conns requests of body in flight: each connection sends
// its next request when the last is answered. It warms up for warmup,
// then counts what is answered in a window of d; window, if set, is
// called as the window opens and closes.
func (t *Target) Closed(body []byte, conns int, warmup, d time.Duration, window func(open bool)) *Stats {
	return t.ClosedMix([]Payload{{Body: body}}, conns, warmup, d, window)
}

// ClosedMix is Closed with each connection sending the payloads in turn,
// from a different one.
func (t *Target) ClosedMix(payloads []Payload, conns int, warmup, d time.Duration, window func(open bool)) *Stats {
	return closed(conns, warmup, d, window, func(c int) (func() (int, int, error, time.Duration), func()) {
		reqs := make([]*fasthttp.Request, len(payloads))
		for i, p := range payloads {
			reqs[i] = t.Request(p.Body)
		}
		resp := fasthttp.AcquireResponse()
		i := c
		call := func() (int, int, error, time.Duration) {
			k := i % len(payloads)
			i++
			err := t.client.Do(reqs[k], resp)
			status, pause := resp.StatusCode(), time.Duration(0)
			if err == nil && status == fasthttp.StatusTooManyRequests {
				pause = t.Backoff
			}
			return status, payloads[k].Rows, err, pause
		}
		return call, func() {
			for _, r := range reqs {
				fasthttp.ReleaseRequest(r)
			}
			fasthttp.ReleaseResponse(resp)
		}
	})
}

// ClosedFunc is a closed loop of conns callers that each call call (with
// the caller's number) again as soon as it returns, for d after warmup: a
// loop over any protocol. call answers an HTTP-like status (200, 429) or
// an error.
func ClosedFunc(conns int, warmup, d time.Duration, call func(i int) (status int, err error)) *Stats {
	return closed(conns, warmup, d, nil, func(c int) (func() (int, int, error, time.Duration), func()) {
		return func() (int, int, error, time.Duration) {
			status, err := call(c)
			return status, 0, err, 0
		}, func() {}
	})
}

// closed runs conns callers, each made by caller (its call, answering a
// status, the rows it carried, an error and how long to pause before the
// next, and what ends it), calling again as soon as a call returns and its
// pause is over; the calls that end within the window of d after warmup
// are counted, their pauses not.
func closed(conns int, warmup, d time.Duration, window func(open bool), caller func(c int) (call func() (int, int, error, time.Duration), end func())) *Stats {
	var measuring, done atomic.Bool
	var mu sync.Mutex
	total := newStats()
	var wg sync.WaitGroup
	for c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			call, end := caller(c)
			defer end()
			mine := newStats()
			for !done.Load() {
				start := time.Now()
				status, rows, err, pause := call()
				if measuring.Load() && !done.Load() {
					mine.record(status, err, time.Since(start), rows)
				}
				if pause > 0 {
					time.Sleep(pause)
				}
			}
			mu.Lock()
			total.merge(mine)
			mu.Unlock()
		}()
	}
	time.Sleep(warmup)
	if window != nil {
		window(true)
	}
	measuring.Store(true)
	t0 := time.Now()
	time.Sleep(d)
	done.Store(true)
	total.Elapsed = time.Since(t0)
	if window != nil {
		window(false)
	}
	wg.Wait()
	return total
}

// Open offers rate requests a second for d, on schedule whatever the
// answers, as independent callers do. Latency runs from each request's
// scheduled time, so a generator that falls behind does not hide it.
func (t *Target) Open(body []byte, rate float64, d time.Duration, maxInflight int) *Stats {
	return t.OpenMix([]Payload{{Body: body}}, rate, d, maxInflight)
}

// OpenMix is Open sending the payloads in turn.
func (t *Target) OpenMix(payloads []Payload, rate float64, d time.Duration, maxInflight int) *Stats {
	s := newStats()
	var mu sync.Mutex
	var wg sync.WaitGroup
	slots := make(chan struct{}, maxInflight)
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	for i := 0; ; i++ {
		at := start.Add(time.Duration(i) * interval)
		if at.Sub(start) >= d {
			break
		}
		time.Sleep(time.Until(at))
		select {
		case slots <- struct{}{}:
		default:
			mu.Lock()
			s.Dropped++
			mu.Unlock()
			continue
		}
		p := payloads[i%len(payloads)]
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			req, resp := t.Request(p.Body), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			sent := time.Now()
			err := t.client.Do(req, resp)
			latency := time.Since(at)
			mu.Lock()
			s.record(resp.StatusCode(), err, latency, p.Rows)
			s.Late = append(s.Late, sent.Sub(at))
			if err == nil && resp.StatusCode() == fasthttp.StatusTooManyRequests {
				d := time.Since(sent)
				s.RejectedFromSend = append(s.RejectedFromSend, d)
				s.RejectedBySize[p.Rows] = append(s.RejectedBySize[p.Rows], d)
				if ra := string(resp.Header.Peek("Retry-After")); ra != "" {
					s.RetryAfter = append(s.RetryAfter, ra)
				}
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.Elapsed = time.Since(start)
	return s
}
