package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/modelserve/modelserve/deploy/batchjob"
)

// irisRow is one row of the batch tests' Parquet input: an id, the four
// features, and a column the model does not take.
type irisRow struct {
	ID          int64   `parquet:"id"`
	SepalLength float32 `parquet:"sepal_length"`
	SepalWidth  float32 `parquet:"sepal_width"`
	PetalLength float32 `parquet:"petal_length"`
	PetalWidth  float32 `parquet:"petal_width"`
	Note        string  `parquet:"note"`
}

// writeIrisParquet writes n rows whose ids are 10·i, so an id is never a
// row number by accident.
func writeIrisParquet(t *testing.T, path string, n int) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[irisRow](f, parquet.MaxRowsPerRowGroup(200_000))
	buf := make([]irisRow, 0, 4096)
	for i := range n {
		x := float32(i%97) / 97
		buf = append(buf, irisRow{ID: int64(10 * i), SepalLength: 4.5 + 3*x, SepalWidth: 2 + 2*x,
			PetalLength: 1 + 5*(1-x), PetalWidth: 0.1 + 2.4*x, Note: "n"})
		if len(buf) == cap(buf) || i == n-1 {
			if _, err := w.Write(buf); err != nil {
				t.Fatal(err)
			}
			buf = buf[:0]
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()
}

type labelRow struct {
	ID    int64 `parquet:"id"`
	Label int64 `parquet:"label"`
}

// readLabels reads a predict-batch output back: its ids in order, and its
// labels.
func readLabels(t *testing.T, path string) (ids []int64, labels []int64) {
	t.Helper()
	rows, err := parquet.ReadFile[labelRow](path)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		ids = append(ids, r.ID)
		labels = append(labels, r.Label)
	}
	return ids, labels
}

// peakMemory reads the peak resident memory predict-batch reports.
func peakMemory(t *testing.T, out string) int64 {
	t.Helper()
	peak, ok := batchjob.PeakFromSummary(out)
	if !ok {
		t.Fatalf("no peak memory in %q", out)
	}
	return peak
}

// TestPredictBatch_millionRowsFlatMemoryAndResume is the acceptance test:
// a 1,000,000-row Parquet file runs in about the memory a 100,000-row one
// does, and a run killed halfway then resumed writes every row once, in
// order, exactly as an uninterrupted run does.
func TestPredictBatch_millionRowsFlatMemoryAndResume(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	dir := t.TempDir()
	small, big := filepath.Join(dir, "small.parquet"), filepath.Join(dir, "big.parquet")
	writeIrisParquet(t, small, 100_000)
	writeIrisParquet(t, big, 1_000_000)

	run := func(in, out string) string {
		t.Helper()
		stdout, stderr, err := c.run("predict-batch", "--model", "iris", "--input", in, "--output", out, "--id-column", "id", "--log-level", "warn")
		if err != nil {
			t.Fatalf("predict-batch %s: %v\n%s", in, err, stderr)
		}
		return stdout
	}
	smallOut := run(small, filepath.Join(dir, "small-out.parquet"))
	clean := filepath.Join(dir, "clean.parquet")
	bigOut := run(big, clean)
	smallRSS, bigRSS := peakMemory(t, smallOut), peakMemory(t, bigOut)
	t.Logf("peak RSS: 100,000 rows %d MiB, 1,000,000 rows %d MiB", smallRSS>>20, bigRSS>>20)
	// Ten times the rows may not cost more than a few MiB: holding the
	// extra 900,000 rows' inputs and outputs alone would take 36 MiB.
	if bigRSS > smallRSS+16<<20 {
		t.Errorf("memory grows with the input: peak RSS %d MiB for 1,000,000 rows, %d MiB for 100,000", bigRSS>>20, smallRSS>>20)
	}
	ids, labels := readLabels(t, clean)
	if len(ids) != 1_000_000 {
		t.Fatalf("clean run wrote %d rows", len(ids))
	}
	for i, id := range ids {
		if id != int64(10*i) {
			t.Fatalf("row %d has id %d, want %d", i, id, 10*i)
		}
		if labels[i] < 0 || labels[i] > 2 {
			t.Fatalf("row %d has label %d", i, labels[i])
		}
	}

	// Kill a run once about half its chunks are written, then resume it.
	resumed := filepath.Join(dir, "resumed.parquet")
	partial := batchjob.PartialDir(resumed)
	cmd := c.command("predict-batch", "--model", "iris", "--input", big, "--output", resumed, "--id-column", "id", "--log-level", "warn")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(2 * time.Minute)
	parts := 0
	for parts < 50 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
		entries, _ := os.ReadDir(partial)
		parts = 0
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), "part-") {
				parts++
			}
		}
	}
	cmd.Process.Kill()
	cmd.Wait()
	if parts < 50 {
		t.Fatalf("only %d parts after 2 minutes", parts)
	}
	if _, err := os.Stat(resumed); err == nil {
		t.Fatal("the killed run finished before it was killed; the test proves nothing")
	}
	// Without --resume, the interrupted run is pointed out, not overwritten.
	_, stderr, err := c.run("predict-batch", "--model", "iris", "--input", big, "--output", resumed, "--id-column", "id")
	if err == nil || !strings.Contains(stderr, "--resume") {
		t.Fatalf("a second run without --resume: %v\n%s", err, stderr)
	}
	out, errOut, err := c.run("predict-batch", "--model", "iris", "--input", big, "--output", resumed, "--id-column", "id", "--resume", "--log-level", "warn")
	if err != nil {
		t.Fatalf("resume: %v\n%s", err, errOut)
	}
	t.Logf("killed after %d of 100 chunks; resume: %s", parts, strings.TrimSpace(out))
	if !strings.Contains(out, "wrote 1000000 rows") || !strings.Contains(out, "chunks were done by the interrupted run") {
		t.Errorf("resume said %q", out)
	}
	a, _ := os.ReadFile(clean)
	b, _ := os.ReadFile(resumed)
	if !bytes.Equal(a, b) {
		gotIDs, _ := readLabels(t, resumed)
		t.Fatalf("the resumed output differs from the uninterrupted one (%d rows)", len(gotIDs))
	}
	if _, err := os.Stat(partial); err == nil {
		t.Error("the parts were left behind")
	}
}
