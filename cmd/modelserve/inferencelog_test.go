package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelserve/modelserve/inferencelog"
)

// uniqueIrisBody is a request of rows rows whose features are unique to seed.
func uniqueIrisBody(seed, rows int) (string, [][4]float32) {
	var b strings.Builder
	sent := make([][4]float32, rows)
	b.WriteString(`{"data":[`)
	for r := range rows {
		if r > 0 {
			b.WriteByte(',')
		}
		f := [4]float32{float32(seed%97) / 10, float32(r%89) / 10, float32(seed*7+r) / 1000, 0.1}
		sent[r] = f
		fmt.Fprintf(&b, "[%d,%v,%v,%v,%v]", r, f[0], f[1], f[2], f[3])
	}
	b.WriteString("]}")
	return b.String(), sent
}

type sentRequest struct {
	features [][4]float32
	labels   []float64
}

// postIris sends a request with its query id and keeps what was sent and
// answered. A request refused for overload (429: a 4096-row request
// ahead of it on the one worker) is sent again, as the gateway does; the
// refusal is never logged.
func postIris(t *testing.T, url, query string, seed, rows int) (sentRequest, error) {
	body, feats := uniqueIrisBody(seed, rows)
	var resp *http.Response
	var b []byte
	for try := 0; ; try++ {
		req, _ := http.NewRequest(http.MethodPost, url+"/predict", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("sf-external-function-current-query-id", query)
		var err error
		if resp, err = http.DefaultClient.Do(req); err != nil {
			return sentRequest{}, err
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusTooManyRequests || try == 100 {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if resp.StatusCode != 200 {
		return sentRequest{}, fmt.Errorf("%s: %d %s", query, resp.StatusCode, b)
	}
	var ans struct{ Data [][2]json.RawMessage }
	if err := json.Unmarshal(b, &ans); err != nil {
		return sentRequest{}, err
	}
	out := sentRequest{features: feats}
	for _, row := range ans.Data {
		var v struct{ Label float64 }
		json.Unmarshal(row[1], &v)
		out.labels = append(out.labels, v.Label)
	}
	return out, nil
}

// TestServe_inferenceLogReadsBackRowForRow: under a 1-row load (two
// callers) and a 4096-row load, every request is in the log once its
// server has stopped: each row's inputs exactly as sent, its output as
// answered, in files a Parquet reader reads whole.
func TestServe_inferenceLogReadsBackRowForRow(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	dir := t.TempDir()
	s := c.serve("--model", "iris", "--workers", "1", "--inference-log", dir, "--inference-log-file-bytes", "512Ki")
	s.waitReady()
	sent := map[string]sentRequest{}
	var mu sync.Mutex
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	load := func(prefix string, n, rows int) {
		defer wg.Done()
		for i := range n {
			q := fmt.Sprintf("%s-%d", prefix, i)
			r, err := postIris(t, s.url, q, i, rows)
			if err != nil {
				errs <- err
				return
			}
			mu.Lock()
			sent[q] = r
			mu.Unlock()
		}
	}
	wg.Add(3)
	go load("one-a", 150, 1)
	go load("one-b", 150, 1)
	go load("wide", 8, 4096)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}

	m, err := inferencelog.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) < 2 {
		t.Errorf("%d files at 512 KiB each, want several", len(m.Files))
	}
	got := map[string][]inferencelog.Row{}
	if err := inferencelog.Each(context.Background(), dir, func(r inferencelog.Row) error {
		got[r.QueryID] = append(got[r.QueryID], r)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != len(sent) {
		t.Errorf("%d requests logged, %d sent", len(got), len(sent))
	}
	for q, want := range sent {
		rows := got[q]
		if len(rows) != len(want.features) {
			t.Errorf("%s: %d rows logged, %d sent", q, len(rows), len(want.features))
			continue
		}
		for i, row := range rows {
			ins, err := inferencelog.ReadInputData(row.InputData)
			if err != nil || len(ins) != 1 || ins[0].Name != "features" {
				t.Fatalf("%s row %d: inputs %v, %v", q, i, ins, err)
			}
			f := ins[0].Tensor.Data.([]float32)
			for k := range 4 {
				if math.Float32bits(f[k]) != math.Float32bits(want.features[i][k]) {
					t.Fatalf("%s row %d: logged %v, sent %v", q, i, f, want.features[i])
				}
			}
			var out struct{ Label float64 }
			if err := json.Unmarshal([]byte(row.Outputs), &out); err != nil || out.Label != want.labels[i] || *row.Row != int64(i) ||
				row.Status != 200 || row.Version != "1" || row.Function != "predict" || row.Principal != "anonymous" {
				t.Fatalf("%s row %d: %+v, answered label %v", q, i, row, want.labels[i])
			}
		}
	}
}

// TestServe_inferenceLogKilledMidWriteListsOnlyWholeFiles: a server killed
// (SIGKILL) while it writes leaves a manifest that lists only whole files
// (each reads to its end, its checksum holds); the next server on the
// folder removes the partial file and goes on.
func TestServe_inferenceLogKilledMidWriteListsOnlyWholeFiles(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	dir := t.TempDir()
	s := c.serve("--model", "iris", "--workers", "1", "--inference-log", dir, "--inference-log-file-bytes", "256Ki")
	s.waitReady()
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := postIris(t, s.url, fmt.Sprint("q", i), i, 4096); err != nil {
				return // the server was killed
			}
		}
	}()
	waitFor(t, 60*time.Second, "two files listed", func() bool {
		m, err := inferencelog.ReadManifest(dir)
		return err == nil && len(m.Files) >= 2
	}, s.logs)
	s.cmd.Process.Signal(syscall.SIGKILL)
	<-s.done
	close(stop)
	<-done

	m, err := inferencelog.ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	whole := func(m inferencelog.Manifest, extra int64) {
		t.Helper()
		for _, f := range m.Files {
			b, err := os.ReadFile(filepath.Join(dir, f.File))
			if err != nil {
				t.Fatal(err)
			}
			if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != f.SHA256 || int64(len(b)) != f.Bytes {
				t.Errorf("%s: %d bytes, checksum %x; the manifest says %d, %s", f.File, len(b), sum, f.Bytes, f.SHA256)
			}
		}
		rows := int64(0)
		if err := inferencelog.Each(context.Background(), dir, func(inferencelog.Row) error { rows++; return nil }); err != nil {
			t.Fatalf("the listed files do not read whole: %v", err)
		}
		want := int64(0)
		for _, f := range m.Files {
			want += f.Rows
		}
		if rows != want || (rows-extra)%4096 != 0 {
			t.Errorf("%d rows read, the manifest lists %d (whole requests of 4096)", rows, want)
		}
	}
	whole(m, 0)
	partial, _ := filepath.Glob(filepath.Join(dir, ".*.partial"))
	t.Logf("killed with %d files listed and %d partial", len(m.Files), len(partial))

	s = c.serve("--model", "iris", "--workers", "1", "--inference-log", dir)
	s.waitReady()
	if _, err := postIris(t, s.url, "after", 1, 10); err != nil {
		t.Fatal(err)
	}
	if err := s.stop(); err != nil {
		t.Fatal(err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, ".*.partial")); len(left) > 0 {
		t.Errorf("partial files left after a restart: %v", left)
	}
	after, err := inferencelog.ReadManifest(dir)
	if err != nil || len(after.Files) != len(m.Files)+1 {
		t.Fatalf("after a restart the manifest lists %d files (%v), want %d", len(after.Files), err, len(m.Files)+1)
	}
	whole(after, 10) // and the restart's request of 10 rows
}
