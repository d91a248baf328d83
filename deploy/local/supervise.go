package local

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"

	"github.com/modelserve/modelserve/deploy/spec"
)

// Restart backoff: the first restart waits minBackoff, each crash soon
// after doubles it up to maxBackoff, and a run longer than stableAfter
// starts over from minBackoff.
const (
	minBackoff  = 500 * time.Millisecond
	maxBackoff  = 30 * time.Second
	stableAfter = 30 * time.Second
)

// runner keeps one container's process running: it restarts it when it
// exits (services) or reports how it ended (jobs), writes its output to the
// container's log, and probes its readiness.
type runner struct {
	p           *process
	logPath     string
	restart     bool
	stopTimeout time.Duration
	log         *slog.Logger
	changed     func()

	mu       sync.Mutex
	state    string
	pid      int
	restarts int
	lastExit string
	ready    bool
	poke     chan struct{} // asks the prober to look now
}

func (r *runner) status() ContainerStatus {
	r.mu.Lock()
	defer r.mu.Unlock()
	runs := "modelserve"
	if r.p.podman {
		runs = "podman"
	}
	return ContainerStatus{Name: r.p.container, Runs: runs, PID: r.pid, State: r.state, Ready: r.ready,
		Restarts: r.restarts, LastExit: r.lastExit, Port: r.p.port, Log: r.logPath}
}

// isReady is true while the process runs and its probe (if any) passes.
func (r *runner) isReady() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.state == "running" && r.ready
}

func (r *runner) set(f func()) {
	r.mu.Lock()
	f()
	r.mu.Unlock()
	r.changed()
}

// run runs the process until ctx ends (then stops it) or, for a job, until
// it exits; the error is how it ended.
func (r *runner) run(ctx context.Context) error {
	logf, err := os.OpenFile(r.logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return fmt.Errorf("container %s: opening its log: %w", r.p.name(), err)
	}
	defer logf.Close()
	out := &logWriter{f: logf, stream: "stdout", keep: r.p.logLevel == spec.LogInfo}
	errOut := &logWriter{f: logf, stream: "stderr", keep: r.p.logLevel != spec.LogNone}
	r.poke = make(chan struct{}, 1)
	if r.p.probe != "" {
		go r.probe(ctx)
	}
	backoff := minBackoff
	for {
		start := time.Now()
		err := r.once(ctx, out, errOut)
		out.flush()
		errOut.flush()
		if ctx.Err() != nil {
			r.set(func() { r.state, r.pid, r.ready = "stopped", 0, false })
			return nil
		}
		exit := describeExit(err)
		if !r.restart {
			r.set(func() { r.state, r.pid, r.lastExit = "exited", 0, exit })
			return err
		}
		if time.Since(start) > stableAfter {
			backoff = minBackoff
		}
		r.log.Warn("container exited; restarting", "container", r.p.name(), "exit", exit,
			"ran", time.Since(start).Round(time.Millisecond).String(), "restart_in", backoff.String())
		r.set(func() { r.state, r.pid, r.ready, r.lastExit = "restarting", 0, false, exit })
		select {
		case <-ctx.Done():
			r.set(func() { r.state = "stopped" })
			return nil
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, maxBackoff)
		r.set(func() { r.restarts++ })
	}
}

// once starts the process and waits for it. Ending ctx stops it: SIGTERM,
// then SIGKILL after stopTimeout.
func (r *runner) once(ctx context.Context, stdout, stderr io.Writer) error {
	cmd := exec.Command(r.p.argv[0], r.p.argv[1:]...)
	cmd.Env = r.p.env
	cmd.Stdout, cmd.Stderr = stdout, stderr
	// Its own process group, so a signal reaches what it starts; and it
	// dies with us if we are killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", r.p.argv[0], err)
	}
	r.set(func() { r.state, r.pid = "running", cmd.Process.Pid })
	r.log.Info("container started", "container", r.p.name(), "pid", cmd.Process.Pid)
	r.pokeProbe()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var watch <-chan time.Time
	if len(r.p.memory) > 0 {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		watch = t.C
	}
	for {
		select {
		case err := <-done:
			return err
		case <-watch:
			for _, m := range r.p.memory {
				if n := dirSize(m.dir); n > m.size {
					r.log.Error("memory volume over its size; stopping the container", "container", r.p.name(),
						"volume", m.volume, "bytes", n, "size", m.size)
					syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				}
			}
		case <-ctx.Done():
			r.set(func() { r.state, r.ready = "stopping", false })
			syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
			select {
			case err := <-done:
				return err
			case <-time.After(r.stopTimeout):
				r.log.Warn("container did not stop in time; killing it", "container", r.p.name(), "after", r.stopTimeout.String())
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				return <-done
			}
		}
	}
}

func (r *runner) pokeProbe() {
	select {
	case r.poke <- struct{}{}:
	default:
	}
}

// probe asks the readiness URL for a 200 every half second, or at once
// when poked (a start, or the proxy seeing a failure).
func (r *runner) probe(ctx context.Context) {
	// Like the kubelet, a probe does not verify an instance's certificate:
	// it asks a process this runner started, on loopback, whether it is
	// ready, and sends nothing secret.
	client := &http.Client{Timeout: time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	t := time.NewTicker(500 * time.Millisecond)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-r.poke:
		}
		ok := false
		if resp, err := client.Get(r.p.probe); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			ok = resp.StatusCode == http.StatusOK
		}
		r.mu.Lock()
		was := r.ready
		r.ready = ok && r.state == "running"
		now := r.ready
		r.mu.Unlock()
		if was != now {
			r.log.Info("readiness", "container", r.p.name(), "ready", now)
			r.changed()
		}
	}
}

func describeExit(err error) string {
	var ee *exec.ExitError
	switch {
	case err == nil:
		return "exit status 0"
	case errors.As(err, &ee):
		return ee.ProcessState.String()
	}
	return err.Error()
}

// logWriter writes a process's output to its log a line at a time, each
// stamped with the time and the stream, keeping only what the spec's log
// level asks for.
type logWriter struct {
	mu     sync.Mutex
	f      *os.File
	stream string
	keep   bool
	buf    []byte
}

func (w *logWriter) Write(p []byte) (int, error) {
	if !w.keep {
		return len(p), nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, p...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.line(w.buf[:i])
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > 64<<10 { // a very long line is written in parts
		w.line(w.buf)
		w.buf = w.buf[:0]
	}
	return len(p), nil
}

func (w *logWriter) line(b []byte) {
	fmt.Fprintf(w.f, "%s %s %s\n", time.Now().UTC().Format("2006-01-02T15:04:05.000Z"), w.stream, b)
}

func (w *logWriter) flush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.buf) > 0 {
		w.line(w.buf)
		w.buf = w.buf[:0]
	}
}
