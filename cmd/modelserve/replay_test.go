package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/modelserve/modelserve/inferencelog"
	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/replay"
)

// TestReplay_sameVersionNoDifferenceOtherVersionTheChangedRows: requests
// logged by iris:1 replayed against iris:1 change nothing; against iris:2
// (other weights) the report counts exactly the rows whose answer
// differs between the versions (as the two servers answer them), the
// Parquet output lists exactly those rows, and replaying against a
// running iris:2 server reports the same.
func TestReplay_sameVersionNoDifferenceOtherVersionTheChangedRows(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	c.must("registry", "log", "--name", "iris", "--version", "2", "--file", testenv.Model(t, "iris_early"),
		"--function", "predict=label", "--function", "predict_proba=probabilities",
		"--features", "sepal_length,sepal_width,petal_length,petal_width")
	dir := t.TempDir()
	v1 := c.serve("--model", "iris:1", "--workers", "1", "--inference-log", dir)
	v2 := c.serve("--model", "iris:2", "--workers", "1")
	v1.waitReady()
	v2.waitReady()
	// The same requests to both: which rows' labels differ is known.
	changed := map[string]bool{} // query/row
	rows := 0
	for i := range 12 {
		q := fmt.Sprint("q", i)
		a, err := postIris(t, v1.url, q, i*5, 1+i*11)
		if err != nil {
			t.Fatal(err)
		}
		b, err := postIris(t, v2.url, q, i*5, 1+i*11)
		if err != nil {
			t.Fatal(err)
		}
		for r := range a.labels {
			if a.labels[r] != b.labels[r] {
				changed[fmt.Sprintf("%s/%d", q, r)] = true
			}
		}
		rows += len(a.labels)
	}
	if err := v1.stop(); err != nil {
		t.Fatal(err)
	}
	if len(changed) == 0 || len(changed) == rows {
		t.Fatalf("%d of %d labels differ between the versions; the test needs some", len(changed), rows)
	}

	labelRE := regexp.MustCompile(`(?m)^label\s+(\d+) of (\d+)\s+\S+\s+(\d+)`)
	probRE := regexp.MustCompile(`(?m)^probabilities\s+(\d+) of (\d+)`)
	report := func(out string) (label, labelRows, flips, prob int) {
		t.Helper()
		m, p := labelRE.FindStringSubmatch(out), probRE.FindStringSubmatch(out)
		if m == nil || p == nil {
			t.Fatalf("no label and probabilities lines in the report:\n%s", out)
		}
		n := func(s string) int { v, _ := strconv.Atoi(s); return v }
		return n(m[1]), n(m[2]), n(m[3]), n(p[1])
	}

	same := c.must("replay", "--log", dir, "--model", "iris:1", "--workers", "1")
	if label, total, flips, prob := report(same); label != 0 || prob != 0 || flips != 0 || total != rows {
		t.Errorf("replayed against the version that logged: %d labels and %d probabilities changed of %d (want 0 of %d)\n%s", label, prob, total, rows, same)
	}

	diffs := filepath.Join(t.TempDir(), "diffs.parquet")
	other := c.must("replay", "--log", dir, "--model", "iris:2", "--workers", "1", "--output", diffs)
	label, total, flips, prob := report(other)
	if label != len(changed) || flips != len(changed) || total != rows || prob == 0 {
		t.Errorf("against iris:2: %d labels changed (%d flips) of %d, %d probabilities; the servers' answers differ on %d labels\n%s",
			label, flips, total, prob, len(changed), other)
	}
	// The differences file names exactly those rows.
	queryOf := map[string]string{}
	if err := inferencelog.Each(context.Background(), dir, func(r inferencelog.Row) error {
		queryOf[r.RequestID] = r.QueryID
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	listed := map[string]bool{}
	for _, d := range readDiffs(t, diffs) {
		if d.Output == "label" {
			listed[fmt.Sprintf("%s/%d", queryOf[d.RequestID], d.Row)] = true
			if !d.Flipped || d.MaxAbs < 1 {
				t.Errorf("label diff %+v", d)
			}
		}
	}
	if len(listed) != len(changed) {
		t.Errorf("%d label rows in %s, want %d", len(listed), filepath.Base(diffs), len(changed))
	}
	for k := range changed {
		if !listed[k] {
			t.Errorf("%s changed but is not in the differences", k)
		}
	}

	remote := c.must("replay", "--log", dir, "--model", "iris:2", "--against", v2.url)
	if rl, rt, rf, rp := report(remote); rl != label || rt != total || rf != flips || rp != prob {
		t.Errorf("against the iris:2 server: %d/%d/%d/%d, here %d/%d/%d/%d\n%s", rl, rt, rf, rp, label, total, flips, prob, remote)
	}
}

func readDiffs(t *testing.T, path string) []replay.Diff {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r := parquet.NewGenericReader[replay.Diff](f)
	defer r.Close()
	out := make([]replay.Diff, r.NumRows())
	if n, err := r.Read(out); n != len(out) {
		t.Fatalf("read %d of %d differences: %v", n, len(out), err)
	}
	return out
}
