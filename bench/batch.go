package main

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/modelserve/modelserve/deploy/batchjob"
	"github.com/modelserve/modelserve/engine"
)

// dlrmRow is one row of the batch section's input: an id and the DLRM's
// dense features and sparse ids, each a list column.
type dlrmRow struct {
	ID     int64     `parquet:"id"`
	Dense  []float32 `parquet:"dense,list"`
	Sparse []int64   `parquet:"sparse,list"`
}

// batchSection runs predict-batch over Parquet files of the DLRM's rows:
// rows/s against raw ONNX Runtime on the same workers at the same batch
// size, and peak memory for ten times the rows.
func batchSection(e *env) (string, error) {
	dir := filepath.Join(e.work, "batch")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	const batch = 1024 // predict-batch's default rows per call
	sizes := []int{100_000, 1_000_000}
	var b strings.Builder
	fmt.Fprintf(&b, "## Batch inference: predict-batch over Parquet\n\n")
	fmt.Fprintf(&b, "The DLRM's rows (13 dense floats and 26 sparse ids, as two list columns, and an id) from a Parquet file into a Parquet file, with predict-batch's defaults (chunks of 10,000 rows, calls of %d rows, one single-threaded worker per core). Raw: in-process sessions on the same workers running %d-row batches with tensors bound once, for %s. Time and peak resident memory are the whole process's, model loading included.\n\n", batch, batch, e.o.duration)
	raw, err := measureRaw(e.modelPath(dlrm), dlrm, batch, engine.PlanCPU(engine.Options{}, runtime.GOMAXPROCS(0)), e.o.duration)
	if err != nil {
		return "", err
	}
	fmt.Fprintln(&b, "| rows | input | time | rows/s | ÷ raw ORT | peak RSS |")
	fmt.Fprintln(&b, "|---:|---:|---:|---:|---:|---:|")
	var rss []int64
	for _, n := range sizes {
		in := filepath.Join(dir, fmt.Sprintf("dlrm-%d.parquet", n))
		if err := writeDLRM(in, n); err != nil {
			return "", err
		}
		info, err := os.Stat(in)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(os.Stderr, "bench: batch %d rows\n", n)
		cmd := exec.Command(e.o.binary, "--registry", e.registry, "--log-level", "warn", "predict-batch", "--model", dlrm.name,
			"--input", in, "--output", filepath.Join(dir, fmt.Sprintf("out-%d.parquet", n)), "--id-column", "id", "--device", "cpu")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return "", fmt.Errorf("predict-batch %d rows: %v\n%s", n, err, stderr.String())
		}
		elapsed := time.Since(start)
		// Its own VmHWM: a child's rusage would start at this process's peak.
		peak, ok := batchjob.PeakFromSummary(stdout.String())
		if !ok {
			return "", fmt.Errorf("predict-batch reported no peak memory: %q", stdout.String())
		}
		rss = append(rss, peak)
		rate := float64(n) / elapsed.Seconds()
		fmt.Fprintf(&b, "| %d | %.1f MiB | %s | %.0f | %.1f%% | %d MiB |\n", n, float64(info.Size())/(1<<20), short(elapsed), rate, 100*rate/raw, peak>>20)
	}
	fmt.Fprintf(&b, "\nRaw ONNX Runtime: %.0f rows/s. Ten times the rows took %.2f× the peak memory.\n", raw, float64(rss[1])/float64(rss[0]))
	return b.String(), nil
}

// writeDLRM writes n rows of random features.
func writeDLRM(path string, n int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := parquet.NewGenericWriter[dlrmRow](f, parquet.MaxRowsPerRowGroup(100_000))
	rng := rand.New(rand.NewPCG(3, 4))
	buf := make([]dlrmRow, 0, 4096)
	for i := range n {
		r := dlrmRow{ID: int64(i), Dense: make([]float32, 13), Sparse: make([]int64, 26)}
		for k := range r.Dense {
			r.Dense[k] = rng.Float32()*2 - 1
		}
		for k := range r.Sparse {
			r.Sparse[k] = rng.Int64N(1000)
		}
		if buf = append(buf, r); len(buf) == cap(buf) || i == n-1 {
			if _, err := w.Write(buf); err != nil {
				return err
			}
			buf = buf[:0]
		}
	}
	return w.Close()
}
