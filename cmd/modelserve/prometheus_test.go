package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/monitoring"
)

// TestServe_prometheusScrapesUnderLoad: Debian's Prometheus, started here
// with the shipped rules, scrapes a running modelserve every second while
// callers load it. What it scraped adds up to what was sent (requests
// counted by the duration histogram, rows by the rows counter), a rate
// over the scraped histogram matches the rate the callers saw, every
// shipped rule evaluates without error and the recording rules have
// values, every query of the shipped dashboard runs, and every metric the
// rules and dashboard name is one the server exports (those of GPUs
// aside: there is none here).
func TestServe_prometheusScrapesUnderLoad(t *testing.T) {
	bin, err := exec.LookPath("prometheus")
	if err != nil {
		t.Fatal("prometheus is needed (Debian package prometheus; make test installs it)")
	}
	c := newCLI(t)
	c.logIris()
	s := c.serve("--model", "iris", "--workers", "2")
	s.waitReady()

	dir := t.TempDir()
	rules := filepath.Join(dir, "rules.yml")
	if err := os.WriteFile(rules, monitoring.Rules(), 0o644); err != nil {
		t.Fatal(err)
	}
	target := strings.TrimPrefix(s.url, "http://")
	config := fmt.Sprintf("global: {scrape_interval: 1s, evaluation_interval: 1s}\nrule_files: [%q]\n"+
		"scrape_configs:\n  - job_name: modelserve\n    static_configs: [{targets: [%q]}]\n", rules, target)
	if err := os.WriteFile(filepath.Join(dir, "prometheus.yml"), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1" + freePort(t)
	logs := &testenv.SyncBuffer{}
	cmd := exec.Command(bin, "--config.file", filepath.Join(dir, "prometheus.yml"), "--storage.tsdb.path", filepath.Join(dir, "data"),
		"--web.listen-address", addr, "--log.level", "warn")
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	prom := "http://" + addr
	waitFor(t, 30*time.Second, "Prometheus ready", func() bool {
		resp, err := http.Get(prom + "/-/ready")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, logs)

	// Prometheus is ready before it scrapes: the load starts once it has.
	scraped := func() bool {
		var r struct{ Data struct{ Result []any } }
		return getJSON(prom+"/api/v1/query?"+url.Values{"query": {`up{job="modelserve"} == 1`}}.Encode(), &r) == nil && len(r.Data.Result) == 1
	}
	waitFor(t, 30*time.Second, "a first scrape", scraped, logs)

	// Two callers, 8-row requests, for 6 s.
	const rows, callers = 8, 2
	body := `{"data": [` + strings.Repeat(`[0, 5.1, 3.5, 1.4, 0.2], `, rows-1) + `[1, 6.7, 3.0, 5.2, 2.3]]}`
	var sent atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range callers {
		wg.Go(func() {
			for time.Since(start) < 6*time.Second {
				if code, answer := s.post("/predict", body); code != 200 {
					t.Errorf("predict = %d %s", code, answer)
					return
				}
				sent.Add(1)
			}
		})
	}
	wg.Wait()
	elapsed := time.Since(start)
	requests := sent.Load()
	mid := start.Add(elapsed / 2)

	query := func(q string, at time.Time) (float64, bool) {
		v := url.Values{"query": {q}}
		if !at.IsZero() {
			v.Set("time", strconv.FormatFloat(float64(at.UnixMilli())/1e3, 'f', 3, 64))
		}
		var r struct {
			Status string
			Error  string
			Data   struct {
				Result []struct{ Value [2]any }
			}
		}
		if err := getJSON(prom+"/api/v1/query?"+v.Encode(), &r); err != nil || r.Status != "success" {
			t.Fatalf("query %s: %v %s", q, err, r.Error)
		}
		if len(r.Data.Result) == 0 {
			return 0, false
		}
		f, _ := strconv.ParseFloat(fmt.Sprint(r.Data.Result[0].Value[1]), 64)
		return f, true
	}
	count := `sum(modelserve_request_duration_seconds_count{model="iris",function="predict",protocol="gateway"})`
	waitFor(t, 30*time.Second, "the last requests scraped", func() bool {
		n, ok := query(count, time.Time{})
		return ok && int64(n) == requests
	}, logs)
	if n, _ := query(`sum(modelserve_rows_predicted_total{model="iris",function="predict"})`, time.Time{}); int64(n) != requests*rows {
		t.Errorf("rows scraped = %v, sent %d", n, requests*rows)
	}
	// The rate over the middle of the load, against the callers' own.
	seen := float64(requests) / elapsed.Seconds()
	if r, ok := query(`sum(rate(modelserve_request_duration_seconds_count{model="iris",function="predict"}[3s]))`, mid); !ok || r < seen/2 || r > seen*2 {
		t.Errorf("rate of requests at the middle of the load = %v, the callers saw %.0f/s", r, seen)
	}
	if p, ok := query(`histogram_quantile(0.5, sum by (le) (modelserve_request_duration_seconds_bucket{model="iris"}))`, time.Time{}); !ok || p <= 0 || p > 1 || math.IsNaN(p) {
		t.Errorf("median request duration from the scraped histogram = %v", p)
	}

	// The shipped rules, evaluated on what was scraped.
	waitFor(t, 30*time.Second, "the recording rules' values", func() bool {
		r, ok := query(`sum(modelserve:rows_predicted:rate1m{model="iris"})`, time.Time{})
		return ok && r > 0
	}, logs)
	var rulesState struct {
		Data struct {
			Groups []struct {
				Rules []struct{ Name, Health, LastError string }
			}
		}
	}
	if err := getJSON(prom+"/api/v1/rules", &rulesState); err != nil {
		t.Fatal(err)
	}
	evaluated := 0
	for _, g := range rulesState.Data.Groups {
		for _, r := range g.Rules {
			evaluated++
			if r.Health != "ok" {
				t.Errorf("rule %s: health %q %s", r.Name, r.Health, r.LastError)
			}
		}
	}
	if evaluated < 11 {
		t.Errorf("Prometheus evaluates %d rules; the file has 11", evaluated)
	}

	// The dashboard's queries run; every metric named is exported.
	var dash struct {
		Panels []struct {
			Title   string
			Targets []struct{ Expr string }
		}
	}
	if err := json.Unmarshal(monitoring.Dashboard(), &dash); err != nil {
		t.Fatal(err)
	}
	named := string(monitoring.Rules())
	for _, p := range dash.Panels {
		for _, q := range p.Targets {
			named += "\n" + q.Expr
			expr := strings.NewReplacer(`$model`, ".*", `$__rate_interval`, "1m").Replace(q.Expr)
			query(expr, time.Time{}) // fails the test on an error
		}
	}
	_, exposition := s.get("/metrics")
	for _, name := range regexp.MustCompile(`\bmodelserve_[a-z_]+`).FindAllString(named, -1) {
		base := strings.TrimSuffix(strings.TrimSuffix(strings.TrimSuffix(name, "_bucket"), "_sum"), "_count")
		if !strings.HasPrefix(name, "modelserve_gpu_") && !strings.Contains(exposition, "\n"+base) && !strings.Contains(exposition, "# TYPE "+base+" ") {
			t.Errorf("the rules or the dashboard name %s, which /metrics does not export", name)
		}
	}
}

// waitFor polls ok until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, ok func() bool, logs fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s\n%s", d, what, logs)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// getJSON reads a JSON answer into v.
func getJSON(u string, v any) error {
	resp, err := http.Get(u)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}
