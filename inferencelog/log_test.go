package inferencelog

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelserve/modelserve/model"
)

func tensor(t *testing.T, dt model.DType, shape model.Shape, data any) model.Tensor {
	t.Helper()
	return model.Tensor{DType: dt, Shape: shape, Data: data}
}

// record is request k of a test: rows rows of every kind of input.
func record(t *testing.T, k, rows int) *Record {
	feats := make([]float32, rows*3)
	ids := make([]int64, rows)
	words := make([]string, rows)
	flags := make([]bool, rows)
	scores := make([]float64, rows)
	rowIDs := make([]int64, rows)
	for i := range rows {
		for j := range 3 {
			feats[i*3+j] = float32(k) + float32(i)/7 + float32(j)
		}
		ids[i] = int64(k*1000 + i)
		words[i] = fmt.Sprintf("w\"%d\n%d", k, i)
		flags[i] = i%2 == 0
		scores[i] = float64(i) / 3
		rowIDs[i] = int64(i * 2)
	}
	feats[0] = float32(math.NaN())
	return &Record{Time: time.Unix(1700000000+int64(k), 0), Model: "m", Version: "1", Function: "predict", Protocol: "gateway",
		Principal: "p", QueryID: "q", BatchID: fmt.Sprint("b", k), TraceID: "t", Status: 200, Latency: 1500 * time.Microsecond,
		RowIDs: rowIDs, InputNames: []string{"feats", "id", "word", "flag"},
		Inputs: []model.Tensor{tensor(t, model.Float32, model.Shape{int64(rows), 3}, feats), tensor(t, model.Int64, model.Shape{int64(rows)}, ids),
			tensor(t, model.String, model.Shape{int64(rows)}, words), tensor(t, model.Bool, model.Shape{int64(rows)}, flags)},
		OutputNames: []string{"score"}, Outputs: []model.Tensor{tensor(t, model.Float64, model.Shape{int64(rows), 1}, scores)}}
}

func readAll(t *testing.T, dir string) []Row {
	t.Helper()
	var rows []Row
	if err := Each(context.Background(), dir, func(r Row) error { rows = append(rows, r); return nil }); err != nil {
		t.Fatal(err)
	}
	return rows
}

// TestLog_writesEveryRowExactlyAndRolls: requests written across several
// files (a small size bound) read back row for row: the request's fields,
// the row numbers, inputs and outputs as JSON, and the inputs exactly.
func TestLog_writesEveryRowExactlyAndRolls(t *testing.T) {
	dir := t.TempDir()
	reg := prometheus.NewRegistry()
	l, err := Open(Config{Dir: dir, Sample: 1, MaxFileBytes: 16 << 10, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	var sent []*Record
	for k := range 40 {
		r := record(t, k, 1+k*7)
		sent = append(sent, r)
		l.Add(r)
	}
	failed := &Record{Time: time.Unix(1700000100, 0), Model: "m", Version: "1", Function: "predict", Protocol: "oip", Status: 400, Error: "bad row"}
	l.Add(failed)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	m, err := ReadManifest(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(m.Files) < 2 {
		t.Fatalf("%d files, want several at 16 KiB each", len(m.Files))
	}
	rows := readAll(t, dir)
	at := 0
	for k, r := range sent {
		for i := range r.Rows() {
			got := rows[at]
			at++
			if got.BatchID != r.BatchID || got.Rows != int32(r.Rows()) || got.Row == nil || *got.Row != int64(i*2) || got.Status != 200 ||
				got.LatencyMS != 1.5 || !got.Time.Equal(r.Time) || got.Model != "m" || got.Principal != "p" || got.TraceID != "t" {
				t.Fatalf("request %d row %d = %+v", k, i, got)
			}
			ins, err := ReadInputData(got.InputData)
			if err != nil {
				t.Fatalf("request %d row %d: %v", k, i, err)
			}
			for n, in := range ins {
				want := r.Inputs[n].SliceRows(i, i+1)
				if in.Name != r.InputNames[n] || !sameTensor(in.Tensor, want) {
					t.Fatalf("request %d row %d input %d = %+v, want %s %+v", k, i, n, in, r.InputNames[n], want)
				}
			}
			wantIn := fmt.Sprintf(`"id":%d,"word":"w\"%d\n%d","flag":%v}`, k*1000+i, k, i, i%2 == 0)
			if !strings.HasSuffix(got.Inputs, wantIn) || got.Outputs != fmt.Sprintf(`{"score":[%v]}`, strings.TrimSuffix(fmt.Sprint(float64(i)/3), ".0")) && i != 0 {
				t.Fatalf("request %d row %d: inputs %s outputs %s", k, i, got.Inputs, got.Outputs)
			}
		}
	}
	last := rows[at]
	if at != len(rows)-1 || last.Row != nil || last.Error != "bad row" || last.Status != 400 || last.Inputs != "" {
		t.Fatalf("the failed request's row = %+v (%d of %d)", last, at, len(rows))
	}
	if !strings.HasPrefix(rows[0].Inputs, `{"feats":[null,`) {
		t.Errorf("NaN written as %s, want null as answers write it", rows[0].Inputs)
	}
	if got := testutil.ToFloat64(l.logged); got != 41 {
		t.Errorf("logged = %v, want 41", got)
	}
	if partial, _ := filepath.Glob(filepath.Join(dir, ".*.partial")); len(partial) > 0 {
		t.Errorf("left %v", partial)
	}
	// What callers sent is for this user alone.
	for _, name := range []string{m.Files[0].File, ManifestName} {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v (%v), want 0600", name, st.Mode().Perm(), err)
		}
	}
}

func sameTensor(a, b model.Tensor) bool {
	if a.DType != b.DType || !reflect.DeepEqual(a.Shape, b.Shape) {
		return false
	}
	if f, ok := a.Data.([]float32); ok {
		g := b.Data.([]float32)
		for i := range f {
			if math.Float32bits(f[i]) != math.Float32bits(g[i]) {
				return false
			}
		}
		return true
	}
	return reflect.DeepEqual(a.Data, b.Data)
}

// slow is a disk that takes its time: every write waits until released.
type slow struct {
	w       io.Writer
	release chan struct{}
	writes  atomic.Int64
}

func (s *slow) Write(p []byte) (int, error) {
	s.writes.Add(1)
	<-s.release
	return s.w.Write(p)
}

// TestLog_aSlowDiskDropsWholeRequestsAndNeverBlocks: with the file's
// writes stuck, Add returns at once; the requests past the queue's bound
// are dropped and counted, and every request is either in the files or
// counted as dropped.
func TestLog_aSlowDiskDropsWholeRequestsAndNeverBlocks(t *testing.T) {
	dir := t.TempDir()
	release := make(chan struct{})
	var disk *slow
	l, err := Open(Config{Dir: dir, Sample: 1, MaxQueueBytes: 256 << 10, Sink: func(w io.Writer) io.Writer {
		disk = &slow{w: w, release: release}
		return disk
	}})
	if err != nil {
		t.Fatal(err)
	}
	const requests = 2000
	began := time.Now()
	for k := range requests {
		l.Add(record(t, k, 64))
	}
	if took := time.Since(began); took > 10*time.Second {
		t.Errorf("adding %d requests with the disk stuck took %v", requests, took)
	}
	dropped := testutil.ToFloat64(l.dropped)
	if dropped == 0 {
		t.Fatal("nothing dropped with the disk stuck and 256 KiB of queue")
	}
	close(release)
	if err := l.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	logged := testutil.ToFloat64(l.logged)
	requestsIn := map[string]bool{}
	for _, r := range readAll(t, dir) {
		requestsIn[r.RequestID] = true
	}
	if logged+dropped != requests || float64(len(requestsIn)) != logged {
		t.Errorf("logged %v + dropped %v, want %d; the files hold %d requests", logged, dropped, requests, len(requestsIn))
	}
	if disk.writes.Load() == 0 {
		t.Error("the sink was never written")
	}
}

// TestOpen_oneServerAFolderAndPartialFilesRemoved: a second log on the
// same folder is refused; a partial file left by a killed server is
// removed, never listed, and numbering goes on after the manifest's.
func TestOpen_oneServerAFolderAndPartialFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Config{Dir: dir, Sample: 1})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Open(Config{Dir: dir, Sample: 1}); err == nil || !strings.Contains(err.Error(), "another process writes") {
		t.Fatalf("a second log on the folder: %v", err)
	}
	l.Add(record(t, 1, 3))
	l.Close(context.Background())
	partial := filepath.Join(dir, ".20260101T000000.000Z-000009.parquet.partial")
	if err := os.WriteFile(partial, []byte("PAR1 cut short"), 0o644); err != nil {
		t.Fatal(err)
	}
	l, err = Open(Config{Dir: dir, Sample: 1})
	if err != nil {
		t.Fatal(err)
	}
	l.Add(record(t, 2, 3))
	l.Close(context.Background())
	if _, err := os.Stat(partial); !os.IsNotExist(err) {
		t.Errorf("the partial file is still there: %v", err)
	}
	m, _ := ReadManifest(dir)
	if len(m.Files) != 2 || m.Files[1].Seq() != "000002" {
		t.Errorf("manifest %+v", m)
	}
	if rows := readAll(t, dir); len(rows) != 6 {
		t.Errorf("%d rows, want 6", len(rows))
	}
}

func TestLog_samplesByShareAndFunction(t *testing.T) {
	tests := []struct {
		cfg  Config
		fn   string
		want float64 // share sampled
	}{
		{Config{Sample: 1}, "predict", 1},
		{Config{Sample: 0}, "predict", 0},
		{Config{Sample: 1, Functions: []string{"proba"}}, "predict", 0},
		{Config{Sample: 1, Functions: []string{"proba"}}, "proba", 1},
		{Config{Sample: 0.25}, "predict", 0.25},
	}
	for _, tt := range tests {
		tt.cfg.Dir = t.TempDir()
		l, err := Open(tt.cfg)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for range 10000 {
			if l.Sampled(tt.fn) {
				n++
			}
		}
		if got := float64(n) / 10000; math.Abs(got-tt.want) > 0.03 {
			t.Errorf("%+v %s: sampled %v, want %v", tt.cfg, tt.fn, got, tt.want)
		}
		l.Close(context.Background())
	}
	if _, err := Open(Config{Dir: t.TempDir(), Sample: 1.5}); err == nil {
		t.Error("a sample of 1.5 was taken")
	}
}

// FuzzReadInputData: any bytes are read as a row or refused, never a
// panic; what AppendInputData writes reads back the same.
func FuzzReadInputData(f *testing.F) {
	r := record(&testing.T{}, 3, 2)
	f.Add(AppendInputData(nil, r.InputNames, r.Inputs, 1))
	f.Add([]byte{1, 0, 1, 0, 'x', 7, 0, 'f', 'l', 'o', 'a', 't', '3', '2', 1, 255, 255, 255, 255, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		ins, err := ReadInputData(b)
		if err != nil {
			return
		}
		names := make([]string, len(ins))
		ts := make([]model.Tensor, len(ins))
		for i, in := range ins {
			names[i], ts[i] = in.Name, in.Tensor
		}
		again, err := ReadInputData(AppendInputData(nil, names, ts, 0))
		if err != nil || len(again) != len(ins) {
			t.Fatalf("written again: %v", err)
		}
		for i := range ins {
			if again[i].Name != ins[i].Name || !sameTensor(again[i].Tensor, ins[i].Tensor) {
				t.Fatalf("input %d: %+v, then %+v", i, ins[i], again[i])
			}
		}
	})
}

// TestLog_closesAFileAtItsAge: a file is closed and listed once it is
// --inference-log-file-age old, with no more requests and no shutdown.
func TestLog_closesAFileAtItsAge(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Config{Dir: dir, Sample: 1, MaxFileAge: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close(context.Background())
	l.Add(record(t, 1, 5))
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m, err := ReadManifest(dir); err == nil && len(m.Files) == 1 && m.Files[0].Rows == 5 {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("the file was not closed at its age")
}

type brokenDisk struct{}

func (brokenDisk) Write([]byte) (int, error) { return 0, errors.New("no space left on device") }

// TestLog_aFailedFileCountsItsRequestsOnce: a file that cannot be written
// loses its requests, each counted failed once, none logged, and leaves
// no partial file behind.
func TestLog_aFailedFileCountsItsRequestsOnce(t *testing.T) {
	dir := t.TempDir()
	l, err := Open(Config{Dir: dir, Sample: 1, Sink: func(io.Writer) io.Writer { return brokenDisk{} }})
	if err != nil {
		t.Fatal(err)
	}
	for k := range 3 {
		l.Add(record(t, k, 4))
	}
	l.Close(context.Background())
	if failed, logged := testutil.ToFloat64(l.failed), testutil.ToFloat64(l.logged); failed != 3 || logged != 0 {
		t.Errorf("failed %v, logged %v; want 3 and 0", failed, logged)
	}
	if partial, _ := filepath.Glob(filepath.Join(dir, ".*.partial")); len(partial) > 0 {
		t.Errorf("left %v", partial)
	}
}
