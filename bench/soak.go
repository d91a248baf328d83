package main

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// soakSection drives one real server for o.soak with a mix of valid
// requests of every shape, invalid, oversized and compressed ones, bombs,
// clients that hang up halfway, slow clients, gateway retries and
// deadlines too short to meet, and reads the server's resident memory,
// goroutines and open descriptors at the start and every minute. It
// passes when the server stays up, answers no 5xx it was not provoked
// into, and, after warm-up, grows less than 5% in all three.
func soakSection(e *env) (string, error) {
	const maxBody = 1 << 20
	srv, err := e.serve(mlp, "--max-body-bytes", strconv.Itoa(maxBody), "--header-timeout", "2s",
		"--result-ttl", "30s")
	if err != nil {
		return "", err
	}
	defer srv.stop()
	s := &soak{url: "http://" + srv.host, maxBody: maxBody, counts: map[string]*atomic.Int64{}}
	for _, k := range soakKinds {
		s.counts[k] = &atomic.Int64{}
	}
	s.client = &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: soakClients, DisableCompression: true}, Timeout: time.Minute}

	interval := min(time.Minute, e.o.soak/4)
	var samples []soakSample
	sample := func(at time.Duration) error {
		// A quiet moment: the clients pause, their kept-alive connections
		// close, and what remains is what the server holds on its own.
		s.pause.Lock()
		defer s.pause.Unlock()
		s.client.CloseIdleConnections()
		smp := soakSample{at: at, answers: s.snapshot(), goroutines: math.MaxInt, fds: math.MaxInt}
		// fasthttp lets a worker goroutine go once it has been idle for
		// 10s, looking every 10s: the least seen over 21s is what the
		// server holds on its own.
		for range 21 {
			time.Sleep(time.Second)
			goroutines, err := srv.metric("go_goroutines")
			if err != nil {
				return fmt.Errorf("the server is gone: %w", err)
			}
			fds, err := srv.metric("process_open_fds")
			if err != nil {
				return err
			}
			smp.goroutines, smp.fds = min(smp.goroutines, int(goroutines)), min(smp.fds, int(fds))
		}
		var err error
		if smp.rss, _, err = srv.memory(); err != nil {
			return fmt.Errorf("the server is gone: %w", err)
		}
		samples = append(samples, smp)
		fmt.Fprintf(os.Stderr, "soak: %s rss %s, %d goroutines, %d descriptors, %v\n", at.Round(time.Second), mib(smp.rss), smp.goroutines, smp.fds, smp.answers)
		return nil
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range soakClients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.client1(uint64(w), stop)
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.slowloris(stop)
	}()
	start := time.Now()
	if err = sample(0); err == nil {
		for tick := interval; tick <= e.o.soak; tick += interval {
			time.Sleep(time.Until(start.Add(tick)))
			if err = sample(time.Since(start)); err != nil {
				break
			}
		}
	}
	close(stop)
	wg.Wait()
	select {
	case exit := <-srv.done:
		err = errors.Join(err, fmt.Errorf("the server exited during the soak: %v", exit))
	default:
	}
	text, verdictErr := s.report(samples, e.o.soak)
	return text, errors.Join(err, verdictErr)
}

const soakClients = 6

// The kinds of exchange the soak counts; answers are counted by status.
var soakKinds = []string{"200", "400", "413", "429", "provoked 5xx", "other 5xx", "other", "client error", "cut while sending", "hung up", "slow client cut"}

type soak struct {
	url     string
	maxBody int
	client  *http.Client
	// pause stops the clients while a sample is taken: they hold it for
	// reading around each exchange.
	pause  sync.RWMutex
	counts map[string]*atomic.Int64
}

type soakSample struct {
	at              time.Duration
	rss             int64
	goroutines, fds int
	answers         map[string]int64
}

func (s *soak) snapshot() map[string]int64 {
	out := map[string]int64{}
	for k, v := range s.counts {
		out[k] = v.Load()
	}
	return out
}

func (s *soak) count(kind string) { s.counts[kind].Add(1) }

// client1 runs exchanges of random kinds until stop.
func (s *soak) client1(seed uint64, stop chan struct{}) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for n := 0; ; n++ {
		select {
		case <-stop:
			return
		default:
		}
		s.pause.RLock()
		s.exchange(rng, fmt.Sprintf("%d-%d", seed, n))
		s.pause.RUnlock()
	}
}

// exchange sends one request of a random kind and counts its answer.
func (s *soak) exchange(rng *rand.Rand, id string) {
	rows := 1 + rng.IntN(32)
	switch k := rng.IntN(100); {
	case k < 40: // valid, of every shape
		s.post(soakBody(rng, rows, rng.IntN(4)), nil, false)
	case k < 48: // valid, gzipped
		s.post(gzipBytes(soakBody(rng, rows, 0)), map[string]string{"Content-Encoding": "gzip"}, false)
	case k < 56: // a gateway batch and its retry, which must get the same answer
		h := map[string]string{"sf-external-function-current-query-id": "q" + id, "sf-external-function-query-batch-id": "b" + id}
		b := soakBody(rng, rows, 0)
		first := s.post(b, h, false)
		if again := s.post(b, h, false); first != nil && again != nil && !bytes.Equal(first, again) {
			s.count("other")
		}
	case k < 68: // the caller's mistakes
		s.post([]byte(soakInvalid[rng.IntN(len(soakInvalid))]), nil, false)
	case k < 72: // too large, as sent or once inflated
		if rng.IntN(2) == 0 {
			// The server may answer 413 and close before all is sent.
			s.post(bytes.Repeat([]byte(" "), s.maxBody+1), map[string]string{soakOversized: "1"}, false)
		} else {
			s.post(gzipBytes(bytes.Repeat([]byte(" "), 4*s.maxBody)), map[string]string{"Content-Encoding": "gzip"}, false)
		}
	case k < 80: // a deadline no request can meet: 504 or 429, provoked
		s.post(soakBody(rng, 256, 0), map[string]string{"X-Request-Timeout": "1ms"}, true)
	case k < 90: // hangs up halfway through the body
		s.hangUp(soakBody(rng, rows, 0), true)
	default: // hangs up before the answer
		s.hangUp(soakBody(rng, 256, 0), false)
	}
}

// soakOversized marks (as a header the server ignores) a body over the
// limit, which the server may refuse before it has all arrived.
const soakOversized = "X-Soak-Oversized"

// post sends a body and counts the answer; it returns a 200's body.
func (s *soak) post(body []byte, headers map[string]string, provoked bool) []byte {
	req, _ := http.NewRequest("POST", s.url+"/predict", bytes.NewReader(body))
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	resp, err := s.client.Do(req)
	if err != nil && headers[soakOversized] != "" {
		s.count("cut while sending")
		return nil
	}
	if err != nil {
		s.count("client error")
		fmt.Fprintf(os.Stderr, "soak: %v\n", err)
		return nil
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch code := resp.StatusCode; {
	case err != nil:
		s.count("client error")
	case code >= 500 && provoked:
		s.count("provoked 5xx")
	case code >= 500:
		s.count("other 5xx")
		fmt.Fprintf(os.Stderr, "soak: an unprovoked %d: %.200s\n", code, answer)
	case code == 200 || code == 400 || code == 413 || code == 429:
		s.count(strconv.Itoa(code))
	default:
		s.count("other")
		fmt.Fprintf(os.Stderr, "soak: an unexpected %d: %.200s\n", code, answer)
	}
	if resp.StatusCode == 200 {
		return answer
	}
	return nil
}

// hangUp sends a request on its own connection and closes it: halfway
// through the body, or right after sending it all.
func (s *soak) hangUp(body []byte, halfway bool) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		s.count("client error")
		return
	}
	fmt.Fprintf(conn, "POST /predict HTTP/1.1\r\nHost: soak\r\nContent-Length: %d\r\n\r\n", len(body))
	if halfway {
		body = body[:len(body)/2]
	}
	conn.Write(body)
	conn.Close()
	s.count("hung up")
}

// slowloris keeps opening connections that send their headers a line at
// a time; the server must cut each (--header-timeout 2s).
func (s *soak) slowloris(stop chan struct{}) {
	for {
		select {
		case <-stop:
			return
		case <-time.After(5 * time.Second):
		}
		s.pause.RLock()
		var wg sync.WaitGroup
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				conn, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
				if err != nil {
					s.count("client error")
					return
				}
				defer conn.Close()
				conn.Write([]byte("POST /predict HTTP/1.1\r\nHost: soak\r\n"))
				for i := range 20 {
					time.Sleep(500 * time.Millisecond)
					conn.SetWriteDeadline(time.Now().Add(time.Second))
					if _, err := fmt.Fprintf(conn, "X-Slow-%d: x\r\n", i); err != nil {
						s.count("slow client cut")
						return
					}
					conn.SetReadDeadline(time.Now().Add(time.Millisecond))
					if _, err := conn.Read(make([]byte, 64)); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
						s.count("slow client cut")
						return
					}
				}
				s.count("other") // never cut
			}()
		}
		wg.Wait()
		s.pause.RUnlock()
	}
}

var soakInvalid = []string{
	`not json`,
	`{"data": [[0, 1, 2]]}`,
	`{"data": [[0, "x"` + strings.Repeat(", 1", 63) + `]]}`,
	`{"data": []}`,
	`{"x": ` + strings.Repeat("[", 200) + strings.Repeat("]", 200) + `, "data": [[0, 1]]}`,
	`{"dataframe_split": {"columns": ["nope"], "data": [[1]]}}`,
	`{"data": [[0` + strings.Repeat(", 00", 64) + `]]}`,
	`{"data": [[0, {"x": [1, 2]}]]}`,
}

// soakBody is rows rows of the MLP's 64 features: flat (0), wide (1),
// dataframe_split (2) or dataframe_records (3).
func soakBody(rng *rand.Rand, rows, shape int) []byte {
	var b bytes.Buffer
	vec := func() {
		b.WriteByte('[')
		for i := range 64 {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatFloat(float64(rng.Float32()*2-1), 'g', 6, 32))
		}
		b.WriteByte(']')
	}
	switch shape {
	case 2:
		b.WriteString(`{"dataframe_split": {"columns": ["x"], "data": [`)
	case 3:
		b.WriteString(`{"dataframe_records": [`)
	default:
		b.WriteString(`{"data": [`)
	}
	for r := range rows {
		if r > 0 {
			b.WriteByte(',')
		}
		switch shape {
		case 0:
			fmt.Fprintf(&b, "[%d,", r)
			vec()
			b.WriteByte(']')
		case 1:
			fmt.Fprintf(&b, `[%d, {"x": `, r)
			vec()
			b.WriteString("}]")
		case 2:
			b.WriteByte('[')
			vec()
			b.WriteByte(']')
		case 3:
			b.WriteString(`{"x": `)
			vec()
			b.WriteByte('}')
		}
	}
	if shape == 2 {
		b.WriteString("]}}")
	} else {
		b.WriteString("]}")
	}
	return b.Bytes()
}

func gzipBytes(b []byte) []byte {
	var out bytes.Buffer
	w := gzip.NewWriter(&out)
	w.Write(b)
	w.Close()
	return out.Bytes()
}

// report writes the samples as a table and judges the run: after warm-up
// (the first fifth), memory, goroutines and descriptors grow less than 5%
// (from the median of three samples to that of the last three), and no
// 5xx came unprovoked.
func (s *soak) report(samples []soakSample, total time.Duration) (string, error) {
	var b strings.Builder
	fmt.Fprintf(&b, "## Soak: %s of mixed, partly hostile load\n\n", total)
	fmt.Fprintf(&b, "One modelserve serving the MLP (--max-body-bytes 1MiB, --header-timeout 2s, --result-ttl 30s); %d clients in a closed loop, each exchange of a random kind: valid requests of every shape (40%%), gzipped (8%%), gateway batches sent twice with the same batch id (8%%), invalid bodies (12%%), bodies over the limit as sent or once inflated (4%%), deadlines of 1ms on 256 rows (8%%: refused at once with 429, or, if admitted, 504, the provoked 5xx), clients hanging up halfway through the body (10%%) or before the answer (10%%) (cut while sending counts the bodies over the limit that the server answered 413 and closed on before the client had sent them all); and every 5s, 20 connections trickling header lines. Each sample is taken in a pause of 21s: the clients stop and close their idle connections, and goroutines and descriptors are the least read in that time (fasthttp lets an idle worker goroutine go within 20s), so what is counted is what the server holds on its own. Answers are counted since the start.\n\n", soakClients)
	b.WriteString("| time | resident memory | goroutines | open descriptors |")
	for _, k := range soakKinds {
		fmt.Fprintf(&b, " %s |", k)
	}
	b.WriteString("\n|---|---:|---:|---:|")
	for range soakKinds {
		b.WriteString("---:|")
	}
	b.WriteString("\n")
	for _, smp := range samples {
		fmt.Fprintf(&b, "| %s | %s | %d | %d |", smp.at.Round(time.Second), mib(smp.rss), smp.goroutines, smp.fds)
		for _, k := range soakKinds {
			fmt.Fprintf(&b, " %d |", smp.answers[k])
		}
		b.WriteString("\n")
	}
	// Each end is the median of three samples: resident memory moves a few
	// percent from one minute to the next with the garbage collector.
	from := max(1, len(samples)/5)
	if len(samples)-from < 6 {
		return b.String(), fmt.Errorf("%d samples after warm-up; six are needed to judge (run longer)", len(samples)-from)
	}
	base, end := samples[from:from+3], samples[len(samples)-3:]
	median := func(ss []soakSample, v func(soakSample) float64) float64 {
		vals := []float64{v(ss[0]), v(ss[1]), v(ss[2])}
		slices.Sort(vals)
		return vals[1]
	}
	growth := func(v func(soakSample) float64) float64 {
		return (median(end, v) - median(base, v)) / median(base, v) * 100
	}
	checks := []struct {
		what string
		pct  float64
	}{
		{"resident memory", growth(func(s soakSample) float64 { return float64(s.rss) })},
		{"goroutines", growth(func(s soakSample) float64 { return float64(s.goroutines) })},
		{"open descriptors", growth(func(s soakSample) float64 { return float64(s.fds) })},
	}
	last := samples[len(samples)-1]
	var failures []string
	fmt.Fprintf(&b, "\nFrom the median of the samples at %s, %s and %s (after warm-up) to that of the last three:",
		base[0].at.Round(time.Second), base[1].at.Round(time.Second), base[2].at.Round(time.Second))
	for i, c := range checks {
		sep := ","
		if i == 0 {
			sep = ""
		}
		fmt.Fprintf(&b, "%s %s %+.1f%%", sep, c.what, c.pct)
		if c.pct >= 5 {
			failures = append(failures, fmt.Sprintf("%s grew %.1f%%", c.what, c.pct))
		}
	}
	if n := last.answers["other 5xx"]; n > 0 {
		failures = append(failures, fmt.Sprintf("%d unprovoked 5xx", n))
	}
	if n := last.answers["other"]; n > 0 {
		failures = append(failures, fmt.Sprintf("%d unexpected answers", n))
	}
	if len(failures) == 0 {
		b.WriteString(". Pass: the server stayed up, answered no 5xx it was not provoked into, and grew less than 5% in each.\n")
		return b.String(), nil
	}
	fmt.Fprintf(&b, ". **Fail**: %s.\n", strings.Join(failures, "; "))
	return b.String(), errors.New(strings.Join(failures, "; "))
}
