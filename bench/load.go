package main

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"
)

// stats is what a load run saw in its measuring window.
type stats struct {
	elapsed  time.Duration
	statuses map[int]int
	// clientErrors are transport failures; dropped are requests the
	// open-loop generator could not even send (too many in flight).
	clientErrors, dropped int
	ok, rejected          []time.Duration // latencies of 200s and 429s
	// rejectedFromSend times 429s from the moment the request was sent;
	// late is how far behind schedule the open-loop generator sent.
	rejectedFromSend, late []time.Duration
}

func (s *stats) record(status int, err error, latency time.Duration) {
	if err != nil {
		s.clientErrors++
		return
	}
	s.statuses[status]++
	switch status {
	case fasthttp.StatusOK:
		s.ok = append(s.ok, latency)
	case fasthttp.StatusTooManyRequests:
		s.rejected = append(s.rejected, latency)
	}
}

func (s *stats) merge(o *stats) {
	for k, v := range o.statuses {
		s.statuses[k] += v
	}
	s.clientErrors += o.clientErrors
	s.ok = append(s.ok, o.ok...)
	s.rejected = append(s.rejected, o.rejected...)
}

// okPerSecond is the rate of answered requests.
func (s *stats) okPerSecond() float64 { return float64(len(s.ok)) / s.elapsed.Seconds() }

// others counts answers that are neither 200 nor 429, and failures.
func (s *stats) others() int {
	n := s.clientErrors
	for code, c := range s.statuses {
		if code != fasthttp.StatusOK && code != fasthttp.StatusTooManyRequests {
			n += c
		}
	}
	return n
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sorted := slices.Clone(ds)
	slices.Sort(sorted)
	return sorted[min(len(sorted)-1, int(float64(len(sorted))*p))]
}

func newClient(host string, conns int) *fasthttp.HostClient {
	return &fasthttp.HostClient{Addr: host, MaxConns: conns, ReadTimeout: 5 * time.Minute, WriteTimeout: time.Minute,
		MaxIdemponentCallAttempts: 1}
}

func newRequest(host string, body []byte) *fasthttp.Request {
	req := fasthttp.AcquireRequest()
	req.SetRequestURI("http://" + host + "/predict")
	req.Header.SetMethod(fasthttp.MethodPost)
	req.Header.SetContentType("application/json")
	req.SetBodyRaw(body)
	return req
}

// closedLoop keeps conns requests in flight: each connection sends its next
// request when the last is answered. It warms up for a second, then counts
// what is answered in a window of d; window, if set, is called as the
// window opens and closes.
func closedLoop(host string, body []byte, conns int, d time.Duration, window func(open bool)) *stats {
	client := newClient(host, conns)
	var measuring, done atomic.Bool
	var mu sync.Mutex
	total := &stats{statuses: map[int]int{}}
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, resp := newRequest(host, body), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			mine := &stats{statuses: map[int]int{}}
			for !done.Load() {
				start := time.Now()
				err := client.Do(req, resp)
				if measuring.Load() && !done.Load() {
					mine.record(resp.StatusCode(), err, time.Since(start))
				}
			}
			mu.Lock()
			total.merge(mine)
			mu.Unlock()
		}()
	}
	time.Sleep(time.Second)
	if window != nil {
		window(true)
	}
	measuring.Store(true)
	t0 := time.Now()
	time.Sleep(d)
	done.Store(true)
	total.elapsed = time.Since(t0)
	if window != nil {
		window(false)
	}
	wg.Wait()
	return total
}

// openLoop offers rate requests a second for d, on schedule whatever the
// answers, as independent callers do. Latency runs from each request's
// scheduled time, so a generator that falls behind does not hide it.
func openLoop(host string, body []byte, rate float64, d time.Duration, maxInflight int) *stats {
	client := newClient(host, maxInflight)
	s := &stats{statuses: map[int]int{}}
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
			s.dropped++
			mu.Unlock()
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-slots }()
			req, resp := newRequest(host, body), fasthttp.AcquireResponse()
			defer fasthttp.ReleaseRequest(req)
			defer fasthttp.ReleaseResponse(resp)
			sent := time.Now()
			err := client.Do(req, resp)
			latency := time.Since(at)
			mu.Lock()
			s.record(resp.StatusCode(), err, latency)
			s.late = append(s.late, sent.Sub(at))
			if err == nil && resp.StatusCode() == fasthttp.StatusTooManyRequests {
				s.rejectedFromSend = append(s.rejectedFromSend, time.Since(sent))
			}
			mu.Unlock()
		}()
	}
	wg.Wait()
	s.elapsed = time.Since(start)
	return s
}
