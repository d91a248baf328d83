package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelserve/modelserve/deploy/local"
	"github.com/modelserve/modelserve/deploy/spec"
	"github.com/modelserve/modelserve/internal/testenv"
)

func TestServiceSpec_forAModel(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	out := c.must("service", "spec", "--model", "iris", "--image", "127.0.0.1:5000/models/iris:1", "--gpu", "1",
		"--workers", "2", "--max-batch-rows", "32", "--ingress", "--memory", "4Gi")
	p, err := spec.Parse("out", []byte(out))
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	ctr := p.Spec.Containers[0]
	r := ctr.Resources
	if ctr.Name != "model-inference" || ctr.Image != "127.0.0.1:5000/models/iris:1" ||
		ctr.Env["MODELSERVE_MODEL"] != "iris:1" || ctr.Env["MODELSERVE_WORKERS"] != "2" ||
		ctr.Env["MODELSERVE_MAX_BATCH_ROWS"] != "32" || ctr.Env["MODELSERVE_DEVICE"] != "cuda" ||
		*ctr.ReadinessProbe != (spec.Probe{Port: 8080, Path: "/healthcheck"}) ||
		r.Requests.GPU.Value() != 1 || r.Limits.GPU.Value() != 1 || r.Requests.Memory.Value() != 4<<30 {
		t.Errorf("container: %+v", ctr)
	}
	if ep := p.Spec.Endpoints; len(ep) != 1 || ep[0] != (spec.Endpoint{Name: "inference", Port: 8080, Public: true, Protocol: "HTTP", Line: ep[0].Line}) {
		t.Errorf("endpoints: %+v", ep)
	}
	if _, _, err := c.run("service", "spec", "--model", "nosuch", "--image", "x"); err == nil {
		t.Error("a spec for a model that is not registered")
	}
}

func TestValidate_printsEveryProblem(t *testing.T) {
	c := newCLI(t)
	f := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(f, []byte("spec:\n  containers:\n  - name: App\n    image: i\n  endpoints:\n  - name: e\n    port: 0\n"), 0o644)
	_, errOut, err := c.run("validate", f)
	if err == nil || !strings.Contains(errOut, "2 problem(s)") || !strings.Contains(errOut, "bad.yaml:3:11") || !strings.Contains(errOut, "bad.yaml:7:11") {
		t.Errorf("validate: %v\n%s", err, errOut)
	}
}

// upService is a running modelserve service up.
type upService struct {
	t        *testing.T
	c        cli
	name     string
	stateDir string
	proc     *os.Process
	logs     *testenv.SyncBuffer
	exited   chan struct{} // closed when the process has exited, with err set
	err      error
}

func (c cli) serviceUp(name, specFile string, args ...string) *upService {
	c.t.Helper()
	u := &upService{t: c.t, c: c, name: name, stateDir: c.t.TempDir(), logs: &testenv.SyncBuffer{}, exited: make(chan struct{})}
	if !slices.Contains(args, "--publish") {
		args = append(args, "--publish", "inference=0")
	}
	cmd := c.command(append([]string{"service", "up", name, "--spec", specFile, "--state-dir", u.stateDir}, args...)...)
	cmd.Stdout, cmd.Stderr = u.logs, u.logs
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	u.proc = cmd.Process
	go func() { u.err = cmd.Wait(); close(u.exited) }()
	c.t.Cleanup(func() {
		u.proc.Signal(syscall.SIGTERM)
		select {
		case <-u.exited:
		case <-time.After(30 * time.Second):
			u.proc.Kill()
		}
	})
	return u
}

func (u *upService) status() *local.Status {
	u.t.Helper()
	out, errOut, err := u.c.run("service", "status", u.name, "--state-dir", u.stateDir, "--json")
	if err != nil {
		return nil // not written yet
	}
	var st local.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		u.t.Fatalf("status: %v\n%s%s", err, out, errOut)
	}
	return &st
}

// waitFor polls the status until ok holds.
func (u *upService) waitFor(what string, ok func(*local.Status) bool) *local.Status {
	u.t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-u.exited:
			u.t.Fatalf("service up exited (%v) waiting for %s\n%s", u.err, what, u.logs)
		default:
		}
		if st := u.status(); st != nil && ok(st) {
			return st
		}
		time.Sleep(50 * time.Millisecond)
	}
	st := u.status()
	var logs strings.Builder
	if st != nil {
		for _, in := range st.Instances {
			for _, c := range in.Containers {
				b, _ := os.ReadFile(c.Log)
				fmt.Fprintf(&logs, "--- %d/%s:\n%s", in.Index, c.Name, b)
			}
		}
	}
	u.t.Fatalf("timed out waiting for %s; last status %+v\n%s\n%s", what, st, u.logs, logs.String())
	return nil
}

func allReady(st *local.Status) bool {
	for _, in := range st.Instances {
		if !in.Ready {
			return false
		}
	}
	return len(st.Instances) > 0 && st.State == "running"
}

var rowsPredictedRE = regexp.MustCompile(`(?m)^modelserve_rows_predicted_total\{[^}]*\} (\d+)`)

func rowsPredicted(t *testing.T, port int) int {
	resp, err := http.Get(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	n := 0
	for _, m := range rowsPredictedRE.FindAllStringSubmatch(string(b), -1) {
		v, _ := strconv.Atoi(m[1])
		n += v
	}
	return n
}

// TestServiceUp_twoInstancesRestartAndDrain: a service from a generated
// spec runs two instances that both serve; killing one instance's process
// gets it restarted while requests through the endpoint keep succeeding;
// SIGTERM drains without losing an admitted request.
func TestServiceUp_twoInstancesRestartAndDrain(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	specFile := filepath.Join(t.TempDir(), "iris.yaml")
	c.must("service", "spec", "--model", "iris", "--image", "127.0.0.1:1/not-pulled/iris:1", "--workers", "1", "-o", specFile)
	u := c.serviceUp("iris", specFile, "--instances", "2")
	st := u.waitFor("both instances ready", allReady)
	url := "http://" + st.Endpoints[0].Address
	body := `{"data": [[0, 5.1, 3.5, 1.4, 0.2], [1, 6.7, 3.0, 5.2, 2.3]]}`
	post := func(body string) (int, string, error) {
		resp, err := http.Post(url+"/predict", "application/json", strings.NewReader(body))
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), err
	}
	for range 20 {
		code, out, err := post(body)
		if err != nil || code != 200 || out != `{"data":[[0,{"label":0}],[1,{"label":2}]]}` {
			t.Fatalf("through the endpoint: %d %s %v", code, out, err)
		}
	}
	ports := []int{st.Instances[0].Containers[0].Port, st.Instances[1].Containers[0].Port}
	for i, p := range ports {
		if n := rowsPredicted(t, p); n < 10 {
			t.Errorf("instance %d predicted %d rows of 40; requests are not spread", i, n)
		}
	}

	// Load through the endpoint while instance 0 crashes and restarts.
	stop := steadyLoad(4, func() error {
		if code, out, err := post(body); err != nil || code != 200 {
			return fmt.Errorf("%d %s %v", code, out, err)
		}
		return nil
	})
	time.Sleep(300 * time.Millisecond)
	pid := st.Instances[0].Containers[0].PID
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	st = u.waitFor("instance 0 restarted and ready", func(st *local.Status) bool {
		c := st.Instances[0].Containers[0]
		return c.Restarts == 1 && c.PID != pid && allReady(st)
	})
	time.Sleep(300 * time.Millisecond)
	loaded := stop()
	if loaded.failed > 0 {
		t.Errorf("%d of %d requests failed while an instance restarted; first: %v", loaded.failed, loaded.sent, loaded.first)
	}
	if c := st.Instances[0].Containers[0]; !strings.Contains(c.LastExit, "killed") {
		t.Errorf("last exit %q", c.LastExit)
	}
	if !strings.Contains(u.logs.String(), "container exited; restarting") {
		t.Errorf("the restart is not logged:\n%s", u.logs)
	}
	logs := c.must("service", "logs", "iris", "model-inference", "--state-dir", u.stateDir, "--instance", "0")
	if strings.Count(logs, "msg=ready") != 2 {
		t.Errorf("instance 0's log should show two starts:\n%s", logs)
	}
	human := c.must("service", "status", "iris", "--state-dir", u.stateDir)
	if !strings.Contains(human, "service iris: running") || !strings.Contains(human, "inference") {
		t.Errorf("status:\n%s", human)
	}

	// Drain: a large request in flight when SIGTERM arrives is answered in
	// full; a request after it gets 503.
	var big strings.Builder
	big.WriteString(`{"data": [`)
	const rows = 150000
	for i := range rows {
		if i > 0 {
			big.WriteString(",")
		}
		fmt.Fprintf(&big, "[%d, 5.1, 3.5, 1.4, 0.2]", i)
	}
	big.WriteString("]}")
	type result struct {
		code int
		out  string
		err  error
	}
	inflight := make(chan result, 1)
	go func() {
		code, out, err := post(big.String())
		inflight <- result{code, out, err}
	}()
	u.waitFor("the large request admitted", func(st *local.Status) bool { return st.Endpoints[0].Served >= 20+loaded.sent+1 })
	u.proc.Signal(syscall.SIGTERM)
	refused := false
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline) && !refused; {
		code, _, err := post(body)
		if err == nil && code == 503 {
			refused = true
		}
		// 429: admission's answer to a request behind the large one, sent
		// before the signal is handled.
		if err == nil && code != 200 && code != 503 && code != 429 {
			t.Errorf("during the drain: %d", code)
		}
	}
	if !refused {
		t.Error("no 503 during the drain")
	}
	r := <-inflight
	if r.err != nil || r.code != 200 || strings.Count(r.out, `{"label":0}`) != rows {
		t.Errorf("the request in flight at SIGTERM: %d %v, %d bytes", r.code, r.err, len(r.out))
	}
	select {
	case <-u.exited:
		if u.err != nil {
			t.Errorf("service up exited with %v\n%s", u.err, u.logs)
		}
	case <-time.After(60 * time.Second):
		t.Fatalf("service up did not stop\n%s", u.logs)
	}
	if st := u.status(); st.State != "stopped" {
		t.Errorf("final state %q", st.State)
	}
	for _, p := range []int{pid} {
		if syscall.Kill(p, 0) == nil {
			t.Errorf("process %d still runs", p)
		}
	}
}
