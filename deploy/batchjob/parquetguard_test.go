package batchjob

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/internal/parquetguard"
)

// TestCheckParquet_passesWhatTheWriterWrites: every file predict-batch's
// own writer makes, lists included, passes the check.
func TestCheckParquet_passesWhatTheWriterWrites(t *testing.T) {
	e := irisEngine(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	writeIris(t, in, Parquet)
	e.run(t, Job{Input: in, Output: out, IDColumn: "id"})
	for _, path := range []string{in, out} {
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := parquetguard.Check(bytes.NewReader(b), int64(len(b))); err != nil {
			t.Errorf("%s: %v", filepath.Base(path), err)
		}
	}
}

// TestRun_aParquetFileWhoseLevelsLeaveAColumnEmpty is what FuzzReadParquet
// found: a page that, by its levels, gives a row no value in a scalar
// column. predict-batch used to send the chunk on with that input never
// filled, and panicked; the row is now refused with its column.
func TestRun_aParquetFileWhoseLevelsLeaveAColumnEmpty(t *testing.T) {
	src, _, err := open(filepath.Join("testdata", "levels-leave-a-column-empty.parquet"), Parquet, "")
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	sig := fuzzSignature()
	b, err := newBinding(sig, sig.Functions[0], src.columns(), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := src.bind(b); err != nil {
		t.Fatal(err)
	}
	err = src.read(newChunk(b, 16))
	if err == nil || !strings.Contains(err.Error(), `row 0, column "a": the row has no value in this column; the file's levels are malformed`) {
		t.Fatalf("read = %v", err)
	}
}
