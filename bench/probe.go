package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelserve/modelserve/internal/loadgen"
)

// A probe is one caller in a process of its own that sends a body, waits
// for the answer, pauses 2 ms and sends it again, timing each 429 from
// its send. The load generator cannot time its own refusals as a client
// would see them: its goroutines wait for its cores behind the bodies it
// writes, so part of what it measures is its own scheduling.

// probeFlags are the flags a probe process runs with.
type probeFlags struct {
	url, body string
	d         time.Duration
}

// probeResult is what a probe process writes on its standard output.
type probeResult struct {
	Refused  []time.Duration `json:"refused"`
	Statuses map[int]int     `json:"statuses"`
	Errors   int             `json:"errors"`
}

// runProbe is the probe process itself.
func runProbe(f probeFlags) error {
	body, err := os.ReadFile(f.body)
	if err != nil {
		return err
	}
	tg, err := loadgen.NewTarget(f.url, 1)
	if err != nil {
		return err
	}
	req, resp := tg.Request(body), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	res := probeResult{Statuses: map[int]int{}}
	for end := time.Now().Add(f.d); time.Now().Before(end); time.Sleep(2 * time.Millisecond) {
		sent := time.Now()
		if err := tg.Do(req, resp); err != nil {
			res.Errors++
			continue
		}
		took := time.Since(sent)
		res.Statuses[resp.StatusCode()]++
		if resp.StatusCode() == fasthttp.StatusTooManyRequests {
			res.Refused = append(res.Refused, took)
		}
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// startProbe starts a probe process against url sending body, for d after
// delay; wait returns its result.
func startProbe(e *env, url string, body []byte, delay, d time.Duration) (wait func() (probeResult, error), err error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	file := filepath.Join(e.work, "probe-body.json")
	if err := os.WriteFile(file, body, 0o600); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), delay+d+time.Minute)
	cmd := exec.CommandContext(ctx, self, "--probe-url", url, "--probe-body", file, "--probe-for", d.String())
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var out, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &stderr
	started := make(chan error, 1)
	go func() {
		time.Sleep(delay)
		started <- cmd.Start()
	}()
	return func() (probeResult, error) {
		defer cancel()
		var res probeResult
		if err := <-started; err != nil {
			return res, fmt.Errorf("starting the probe: %w", err)
		}
		if err := cmd.Wait(); err != nil {
			return res, fmt.Errorf("the probe: %w: %s", err, stderr.String())
		}
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			return res, fmt.Errorf("the probe's result: %w", err)
		}
		return res, nil
	}, nil
}
