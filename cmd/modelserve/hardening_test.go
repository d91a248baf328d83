package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelserve/modelserve/internal/faults"
	"github.com/modelserve/modelserve/internal/testenv"
)

// faultBinary is modelserve built with -tags faultinject, whose code
// panics where a request's X-Modelserve-Fault header asks; built once,
// by the first test that needs it.
var faultBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "modelserve-faults-")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "modelserve")
	if out, err := exec.Command("go", "build", "-tags", "faultinject", "-o", bin, ".").CombinedOutput(); err != nil {
		return "", fmt.Errorf("building modelserve -tags faultinject: %v\n%s", err, out)
	}
	return bin, nil
})

// rawExchange writes raw bytes on a new connection and returns what the
// server answers before it closes the connection or timeout passes.
func rawExchange(t *testing.T, url string, request []byte, timeout time.Duration) (string, error) {
	t.Helper()
	conn, err := net.Dial("tcp", strings.TrimPrefix(url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(timeout))
	if _, err := conn.Write(request); err != nil {
		return "", err
	}
	b, err := io.ReadAll(conn)
	return string(b), err
}

func gzipBody(t *testing.T, parts ...[]byte) []byte {
	t.Helper()
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	for _, p := range parts {
		w.Write(p)
	}
	w.Close()
	return b.Bytes()
}

// TestServe_deeplyNestedBodyIsRefusedAndServingGoesOn is the reproducer
// that once ended the process with a stack overflow: 58 KB of gzip whose
// unknown key holds 30 million nested arrays, then a valid "data". It
// inflates a thousandfold, which by default is refused as a bomb (413)
// before any parsing; with that check lifted, and sent uncompressed, it
// reaches the decoder, which refuses it (400) without recursing.
func TestServe_deeplyNestedBodyIsRefusedAndServingGoesOn(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	const depth = 30_000_000
	nested := [][]byte{[]byte(`{"x": `), bytes.Repeat([]byte("["), depth), bytes.Repeat([]byte("]"), depth),
		[]byte(`, "data": [[0, 5.1, 3.5, 1.4, 0.2]]}`)}
	gz := gzipBody(t, nested...)
	if len(gz) > 64<<10 {
		t.Fatalf("the reproducer is %d bytes, not about 58 KB", len(gz))
	}
	for _, tt := range []struct {
		name     string
		flags    []string
		encoding string
		body     []byte
		code     int
		want     string
	}{
		{"gzip, by default", nil, "gzip", gz, 413, "decompression bomb"},
		{"gzip, bomb check lifted", []string{"--max-inflate-ratio", "5000"}, "gzip", gz, 400, "more than 64 levels deep (at byte 70)"},
		{"uncompressed", nil, "", bytes.Join(nested, nil), 400, "more than 64 levels deep (at byte 70)"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := c.serve(append([]string{"--model", "iris"}, tt.flags...)...)
			s.waitReady()
			req, _ := http.NewRequest("POST", s.url+"/predict", bytes.NewReader(tt.body))
			if tt.encoding != "" {
				req.Header.Set("Content-Encoding", tt.encoding)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatalf("the server did not answer the nested body: %v\n%s", err, s.logs)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.code || !strings.Contains(string(answer), tt.want) {
				t.Fatalf("the nested body = %d %s", resp.StatusCode, answer)
			}
			if code, body := s.post("/predict", irisRows); code != 200 {
				t.Fatalf("the next request = %d %s", code, body)
			}
		})
	}
}

const irisRows = `{"data": [[0, 5.1, 3.5, 1.4, 0.2], [1, 6.7, 3.0, 5.2, 2.3]]}`

// TestServe_aPanicFailsOneRequestAndTheProcessGoesOn makes the real process
// panic in each place a request passes through: each such request is
// answered 500 with a request id, the next one is answered, and every
// panic is counted and logged with its stack.
func TestServe_aPanicFailsOneRequestAndTheProcessGoesOn(t *testing.T) {
	bin, err := faultBinary()
	if err != nil {
		t.Fatal(err)
	}
	c := newCLI(t)
	c.logIris()
	c.bin = bin
	s := c.serve("--model", "iris", "--async", "always")
	s.waitReady()
	for i, where := range []string{"handler", "decode", "admission", "worker", "batch"} {
		req, _ := http.NewRequest("POST", s.url+"/predict", strings.NewReader(irisRows))
		req.Header.Set(faults.Header, "panic-"+where)
		if where == "batch" {
			// A gateway batch, run in the background and polled.
			req.Header.Set("sf-external-function-current-query-id", "q")
			req.Header.Set("sf-external-function-query-batch-id", "b")
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("panic in the %s: no answer (%v)\n%s", where, err, s.logs)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if where == "batch" {
			if resp.StatusCode != 202 {
				t.Fatalf("the gateway batch = %d %s", resp.StatusCode, body)
			}
			resp, body = pollUntilDone(t, s.url+"/predict", "q", "b")
		}
		id := resp.Header.Get("X-Request-Id")
		if resp.StatusCode != 500 || id == "" || !strings.Contains(string(body), "request id "+id) {
			t.Fatalf("panic in the %s = %d %s %s", where, resp.StatusCode, resp.Header, body)
		}
		if code, body := s.post("/predict", irisRows); code != 200 {
			t.Fatalf("after a panic in the %s, the next request = %d %s", where, code, body)
		}
		if !s.logged("request_id=" + id) {
			t.Errorf("no log line for request %s", id)
		}
		if n := strings.Count(s.logs.String(), "stack="); n != i+1 {
			t.Errorf("after %d panics, %d stacks logged", i+1, n)
		}
	}
	_, metrics := s.get("/metrics")
	for _, where := range []string{"handler", "decode", "admission", "worker", "batch"} {
		if want := `modelserve_panics_total{where="` + where + `"} 1`; !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	// A release binary ignores the header.
	c.bin = ""
	plain := c.serve("--model", "iris")
	plain.waitReady()
	req, _ := http.NewRequest("POST", plain.url+"/predict", strings.NewReader(irisRows))
	req.Header.Set(faults.Header, "panic-worker")
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 {
		t.Errorf("the release binary obeyed the fault header: %v %v", resp, err)
	}
}

func pollUntilDone(t *testing.T, url, query, batch string) (*http.Response, []byte) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		req, _ := http.NewRequest("GET", url, nil)
		req.Header.Set("sf-external-function-current-query-id", query)
		req.Header.Set("sf-external-function-query-batch-id", batch)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 202 {
			return resp, body
		}
	}
	t.Fatal("the batch was still running after 10s")
	return nil, nil
}

// TestServe_slowAndGreedyClientsAreCutOff: clients that trickle headers or
// bodies, send huge headers, sit idle, never read, or open too many
// connections are cut off by the server, and a normal request is answered
// meanwhile within a second.
func TestServe_slowAndGreedyClientsAreCutOff(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris", "--header-timeout", "1s", "--min-body-rate", "1KiB", "--idle-timeout", "1s",
		"--write-timeout", "1s", "--max-header-bytes", "8KiB", "--max-connections", "1100")
	s.waitReady()
	addr := strings.TrimPrefix(s.url, "http://")

	t.Run("a thousand connections trickling headers", func(t *testing.T) {
		const n = 1000
		conns := make([]net.Conn, 0, n)
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		for range n {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.Write([]byte("POST /predict HTTP/1.1\r\nHost: x\r\n"))
			conns = append(conns, conn)
		}
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // a header line every 100ms on each
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				case <-time.After(100 * time.Millisecond):
				}
				for _, conn := range conns {
					conn.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
					fmt.Fprintf(conn, "X-Trickle-%d: y\r\n", i)
				}
			}
		}()
		var slowest time.Duration
		for range 10 {
			start := time.Now()
			if code, body := s.post("/predict", irisRows); code != 200 {
				t.Errorf("a normal request among the tricklers = %d %s", code, body)
			}
			slowest = max(slowest, time.Since(start))
			time.Sleep(50 * time.Millisecond)
		}
		if slowest > time.Second {
			t.Errorf("a normal request among %d tricklers took %s", n, slowest)
		}
		// Every trickler is answered 408 and closed once its header time
		// is up.
		closed := 0
		for _, conn := range conns {
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			b, err := io.ReadAll(conn)
			var ne net.Error
			if !(errors.As(err, &ne) && ne.Timeout()) && (err == nil || errors.Is(err, syscall.ECONNRESET)) {
				closed++
				if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 408") {
					t.Errorf("a trickler got %.80q", b)
				}
			}
		}
		close(stop)
		wg.Wait()
		if closed != n {
			t.Errorf("%d of %d trickling connections closed by the server", closed, n)
		}
		t.Logf("slowest normal request among %d tricklers: %s", n, slowest)
	})

	t.Run("a body trickled at ten bytes a second", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		start := time.Now()
		fmt.Fprintf(conn, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(irisRows)*100)
		got := make(chan string, 1)
		go func() {
			b, _ := io.ReadAll(conn)
			got <- string(b)
		}()
		var answer string
	trickle:
		for i := 0; ; i++ {
			select {
			case answer = <-got:
				break trickle
			case <-time.After(100 * time.Millisecond):
				conn.Write([]byte{irisRows[i%len(irisRows)]})
			}
		}
		if took := time.Since(start); !strings.HasPrefix(answer, "HTTP/1.1 408") || took > 5*time.Second {
			t.Errorf("after %s, the trickled body got %.200q", took, answer)
		}
	})

	t.Run("headers over the limit", func(t *testing.T) {
		req := "POST /predict HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 9<<10) + "\r\nContent-Length: 2\r\n\r\n{}"
		answer, _ := rawExchange(t, s.url, []byte(req), 5*time.Second)
		if !strings.HasPrefix(answer, "HTTP/1.1 431") {
			t.Errorf("9 KiB of headers got %.200q", answer)
		}
	})

	t.Run("an idle kept-alive connection", func(t *testing.T) {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		fmt.Fprintf(conn, "POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(irisRows), irisRows)
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("the first request: %v %v", resp, err)
		}
		io.Copy(io.Discard, resp.Body)
		start := time.Now()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := r.ReadByte(); err != io.EOF || time.Since(start) > 3*time.Second {
			t.Errorf("the idle connection: %v after %s, want it closed after about 1s", err, time.Since(start))
		}
	})

	t.Run("a client that never reads its answer", func(t *testing.T) {
		var rows strings.Builder
		rows.WriteString(`{"data": [`)
		for i := range 100_000 {
			if i > 0 {
				rows.WriteString(",")
			}
			fmt.Fprintf(&rows, "[%d, 5.1, 3.5, 1.4, 0.2]", i)
		}
		rows.WriteString("]}")
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		// Room for little of the answer, yet enough to read it fast.
		conn.(*net.TCPConn).SetReadBuffer(256 << 10)
		fmt.Fprintf(conn, "POST /predict-proba HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", rows.Len(), rows.String())
		time.Sleep(3 * time.Second) // the answer (about 6 MB) fills the sockets' buffers; the server gives up
		conn.SetReadDeadline(time.Now().Add(20 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err == nil {
			n, err := io.Copy(io.Discard, resp.Body)
			if err == nil && n == resp.ContentLength {
				t.Errorf("the server waited 3s for a client that did not read; want it cut after 1s")
			}
		}
		if code, body := s.post("/predict", irisRows); code != 200 {
			t.Errorf("after the stalled client, a request = %d %s", code, body)
		}
	})

	t.Run("more connections than allowed", func(t *testing.T) {
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				c.Close()
			}
		}()
		// Only this test's connections are open.
		http.DefaultClient.CloseIdleConnections()
		time.Sleep(200 * time.Millisecond)
		refused := 0
		for range 1110 {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conns = append(conns, conn)
		}
		time.Sleep(200 * time.Millisecond)
		for _, conn := range conns {
			conn.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
			b := make([]byte, 12)
			if n, _ := conn.Read(b); strings.HasPrefix(string(b[:n]), "HTTP/1.1 503") {
				refused++
			}
		}
		if refused != 10 {
			t.Errorf("%d of 1110 connections refused with 503, want the 10 past --max-connections 1100", refused)
		}
	})
}

// TestServe_aDecompressionBombCostsAtMostTheBodyLimit sends 4 GiB of gzip
// (4 MB on the wire) and reads the process's peak memory as it refuses it.
func TestServe_aDecompressionBombCostsAtMostTheBodyLimit(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	const limit = 32 << 20
	s := c.serve("--model", "iris", "--max-body-bytes", strconv.Itoa(limit))
	s.waitReady()
	mib := gzipBody(t, make([]byte, 1<<20))
	for name, bomb := range map[string][]byte{
		// Its trailer declares its size: refused before inflating at all.
		"one member of 64 MiB": gzipBody(t, make([]byte, 64<<20)),
		// The trailer tells only of the last member: inflated up to the
		// limit.
		"4096 members of 1 MiB": bytes.Repeat(mib, 4096),
		// Small on the wire: refused by its ratio before the limit.
		"32 members of 1 MiB": bytes.Repeat(mib, 32),
	} {
		t.Run(name, func(t *testing.T) {
			pid := s.cmd.Process.Pid
			// Reset the peak (VmHWM) to what is resident now.
			if err := os.WriteFile(fmt.Sprintf("/proc/%d/clear_refs", pid), []byte("5"), 0); err != nil {
				t.Fatalf("resetting the peak memory: %v", err)
			}
			before := procStatus(t, pid, "VmRSS")
			req, _ := http.NewRequest("POST", s.url+"/predict", bytes.NewReader(bomb))
			req.Header.Set("Content-Encoding", "gzip")
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			answer, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			grew := procStatus(t, pid, "VmHWM") - before
			t.Logf("%d bytes of gzip: %d %s; peak memory grew %.1f MiB (body limit %d MiB)", len(bomb), resp.StatusCode, answer,
				float64(grew)/(1<<20), limit>>20)
			if resp.StatusCode != 413 {
				t.Errorf("the bomb = %d %s", resp.StatusCode, answer)
			}
			// The compressed body itself is held twice (the socket's
			// buffer and the request's), beside what it inflates to.
			if allowed := int64(limit + 2*len(bomb) + 4<<20); grew > allowed {
				t.Errorf("peak memory grew %d bytes; want at most the body limit and the body (%d)", grew, allowed)
			}
			if code, body := s.post("/predict", irisRows); code != 200 {
				t.Errorf("after the bomb, a request = %d %s", code, body)
			}
		})
	}
}

// procStatus reads a kB field of /proc/PID/status, in bytes.
func procStatus(t *testing.T, pid int, field string) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			return kb << 10
		}
	}
	t.Fatalf("no %s in /proc/%d/status", field, pid)
	return 0
}

// TestServe_drainsUnderLoad sends SIGTERM while a burst of large requests
// is admitted and queued: every one of them is answered with all its rows,
// requests sent after the signal get 503 at once, and the process exits
// within the drain timeout.
func TestServe_drainsUnderLoad(t *testing.T) {
	c := newCLI(t)
	c.must("registry", "log", "--name", "encoder", "--version", "1", "--file", testenv.Model(t, "encoder"))
	// Calls of 64 rows: the workers hold two requests' pieces at most,
	// and the rest of the burst waits in the queue.
	s := c.serve("--model", "encoder", "--drain-timeout", "30s", "--max-queue-wait", "1m", "--max-batch-rows", "64")
	s.waitReady()
	const rows = 128
	var b strings.Builder
	b.WriteString(`{"data": [`)
	for i := range rows {
		if i > 0 {
			b.WriteString(",")
		}
		fmt.Fprintf(&b, "[%d, [%s]]", i, strings.TrimSuffix(strings.Repeat(strconv.Itoa(i%7000)+", ", 32), ", "))
	}
	b.WriteString("]}")
	big := b.String()

	type result struct {
		code  int
		rows  int
		took  time.Duration
		after bool // sent after the signal
		err   error
	}
	results := make(chan result, 100)
	send := func(after bool) {
		start := time.Now()
		resp, err := http.Post(s.url+"/predict", "application/json", strings.NewReader(big))
		if err != nil {
			results <- result{err: err, after: after}
			return
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		results <- result{code: resp.StatusCode, rows: strings.Count(string(body), `{"embedding"`), took: time.Since(start), after: after}
	}
	const burst = 8
	for range burst {
		go send(false)
	}
	// Signal once the burst is admitted: all but what the workers run wait
	// in the queue.
	for deadline := time.Now().Add(10 * time.Second); metric(t, s, "modelserve_queue_requests") < burst-2; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("the burst was not admitted within 10s\n%s", s.logs)
		}
	}
	signalled := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)
	time.Sleep(50 * time.Millisecond)
	const late = 5
	for range late {
		go send(true)
	}
	answered, refused := 0, 0
	for range burst + late {
		r := <-results
		switch {
		case r.err != nil:
			t.Errorf("a request (after the signal: %v) got no answer: %v", r.after, r.err)
		case !r.after && r.code == 200 && r.rows == rows:
			answered++
		case r.after && r.code == 503:
			refused++
			if r.took > 500*time.Millisecond {
				t.Errorf("a request after the signal waited %s for its 503", r.took)
			}
		default:
			t.Errorf("a request (after the signal: %v) = %d with %d rows", r.after, r.code, r.rows)
		}
	}
	select {
	case err := <-s.done:
		if err != nil {
			t.Errorf("serve exited with %v\n%s", err, s.logs)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("serve did not exit within the drain timeout\n%s", s.logs)
	}
	t.Logf("%d of %d admitted answered with every row, %d of %d late refused with 503; exited %s after SIGTERM",
		answered, burst, refused, late, time.Since(signalled))
	if answered != burst || refused != late {
		t.Errorf("%d of %d answered, %d of %d refused", answered, burst, refused, late)
	}
}

// metric sums a metric's samples on /metrics.
func metric(t *testing.T, s *service, name string) float64 {
	t.Helper()
	_, body := s.get("/metrics")
	total := 0.0
	for _, line := range strings.Split(body, "\n") {
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, " ") || strings.HasPrefix(rest, "{")) {
			if v, err := strconv.ParseFloat(line[strings.LastIndexByte(line, ' ')+1:], 64); err == nil {
				total += v
			}
		}
	}
	return total
}

// TestCLI_namesAndPathsStayInTheirRoots: nothing typed on a command line or
// written in a spec makes modelserve read or write outside the registry,
// the state directory or a volume.
func TestCLI_namesAndPathsStayInTheirRoots(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	stateDir, outside := t.TempDir(), t.TempDir()
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"a model name that climbs", []string{"registry", "log", "--name", "../../x", "--version", "1", "--file", testenv.Model(t, "iris")}, "must start with a letter or digit"},
		{"a version with a slash", []string{"registry", "show", "iris:1/../../../x"}, "hold only letters"},
		{"a service name that climbs", []string{"service", "status", "../../etc", "--state-dir", stateDir}, `service name "../../etc" must be lowercase`},
		{"a service name with a shell in it", []string{"service", "logs", "$(touch " + outside + "/owned)", "main", "--state-dir", stateDir}, `service name "$(touch`},
		{"a function name that is a path", []string{"registry", "log", "--name", "m", "--version", "1", "--file", testenv.Model(t, "iris"), "--function", "../x=label"}, "function name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, errOut, err := c.run(tt.args...)
			if err == nil || !strings.Contains(errOut, tt.want) {
				t.Errorf("modelserve %s: %v %s", strings.Join(tt.args, " "), err, errOut)
			}
		})
	}
	t.Run("a stage folder that climbs", func(t *testing.T) {
		job := filepath.Join(t.TempDir(), "climb.yaml")
		os.WriteFile(job, []byte("spec:\n  containers:\n  - name: main\n    image: /db/schema/repo/modelserve:1\n    volumeMounts:\n    - name: v\n      mountPath: /in\n  volumes:\n  - name: v\n    source: \"@st/../../etc\"\n"), 0o644)
		_, errOut, err := c.run("job", "run", "--spec", job, "--state-dir", stateDir, "--stage", "st="+t.TempDir())
		if err == nil || !strings.Contains(errOut, `a stage folder is a path down into the stage, without ".."`) {
			t.Errorf("job run: %v %s", err, errOut)
		}
	})
	t.Run("a registry folder linked outside", func(t *testing.T) {
		models := filepath.Join(c.registry, "models", "iris")
		if err := os.Rename(models, filepath.Join(outside, "iris")); err != nil {
			t.Fatal(err)
		}
		os.Symlink(filepath.Join(outside, "iris"), models)
		for _, args := range [][]string{{"registry", "show", "iris:1"}, {"registry", "delete", "iris:1"}, {"serve", "--model", "iris:1"}} {
			if _, errOut, err := c.run(args...); err == nil || !strings.Contains(errOut, "is a symbolic link") {
				t.Errorf("modelserve %s: %v %s", strings.Join(args, " "), err, errOut)
			}
		}
		if _, err := os.Stat(filepath.Join(outside, "iris", "1", "model.onnx")); err != nil {
			t.Errorf("the files the link pointed at: %v", err)
		}
	})
	if entries, _ := os.ReadDir(outside); len(entries) != 1 {
		t.Errorf("something was written outside: %v", entries)
	}
}
