package onnxrt_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/onnxrt"
)

func TestPinnedVersion_matchesTheFetchScript(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "scripts", "fetch-onnxruntime.sh"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ variable, want string }{
		{"ORT_VERSION", onnxrt.PinnedVersion},
		{"GPU_ORT_VERSION", onnxrt.PinnedGPUVersion},
	} {
		m := regexp.MustCompile(`(?m)^` + tt.variable + `=(\S+)$`).FindSubmatch(b)
		if m == nil || string(m[1]) != tt.want {
			t.Fatalf("fetch-onnxruntime.sh sets %s to %q, onnxrt pins %q", tt.variable, m, tt.want)
		}
	}
	if rt := testenv.Runtime(t); rt.Version != onnxrt.PinnedVersion {
		t.Errorf("loaded ONNX Runtime %s, pinned %s", rt.Version, onnxrt.PinnedVersion)
	}
}

func TestFindLibrary_theVariableWinsAndMustExist(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	t.Setenv(onnxrt.LibraryEnv, missing)
	if _, err := onnxrt.FindLibrary(); err == nil || !strings.Contains(err.Error(), onnxrt.LibraryEnv) {
		t.Errorf("FindLibrary() with a wrong %s = %v", onnxrt.LibraryEnv, err)
	}
	os.WriteFile(missing, nil, 0o644)
	if got, err := onnxrt.FindLibrary(); err != nil || got != missing {
		t.Errorf("FindLibrary() = %q, %v; want %q", got, err, missing)
	}
}

func TestFindLibrary_saysWhereItLooked(t *testing.T) {
	t.Setenv(onnxrt.LibraryEnv, "")
	t.Setenv("MODELSERVE_CACHE", t.TempDir())
	_, err := onnxrt.FindLibrary()
	if err == nil || !strings.Contains(err.Error(), "fetch-onnxruntime.sh") {
		t.Errorf("FindLibrary() in an empty cache = %v", err)
	}
}

func TestInspect_readsEveryTensorType(t *testing.T) {
	rt := testenv.Runtime(t)
	b, err := os.ReadFile(testenv.Model(t, "types"))
	if err != nil {
		t.Fatal(err)
	}
	info, err := rt.Inspect(b)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, s := range append(info.Inputs, info.Outputs...) {
		got = append(got, s.Name+":"+s.TypeString())
	}
	want := "i32:int32[?] u8:uint8[?] f64:float64[?] flag:bool[?] sum:float64[?] not_flag:bool[?] doubled:int64[?]"
	if strings.Join(got, " ") != want {
		t.Errorf("specs = %v\nwant  %s", got, want)
	}
}

func TestSession_stringsInAndOut(t *testing.T) {
	rt := testenv.Runtime(t)
	s, err := rt.NewSession(testenv.Model(t, "strings"), []string{"color", "amount"}, []string{"normalized", "code", "score"}, onnxrt.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	outs, err := s.Run(context.Background(), []model.Tensor{
		{DType: model.String, Shape: model.Shape{3}, Data: []string{"RED", "Blue", "naïve"}},
		{DType: model.Float32, Shape: model.Shape{3}, Data: []float32{1, 2, 3}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if got := outs[0].Data.([]string); strings.Join(got, ",") != "red,blue,naïve" {
		t.Errorf("normalized = %q", got)
	}
	if got := outs[2].Data.([]float32); got[0] != 1 || got[1] != 6 || got[2] != 0 {
		t.Errorf("score = %v", got)
	}
}

func TestSession_cancelStopsARunInProgress(t *testing.T) {
	rt := testenv.Runtime(t)
	s, err := rt.NewSession(testenv.Model(t, "encoder"), []string{"input_ids"}, []string{"embedding"}, onnxrt.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	rows := 2048 // seconds of work on one thread
	ids := model.Tensor{DType: model.Int64, Shape: model.Shape{int64(rows), 32}, Data: make([]int64, rows*32)}
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = s.Run(ctx, []model.Tensor{ids})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Run() = %v after %v, want a deadline error", err, time.Since(start))
	}
	// The session is still usable.
	small := model.Tensor{DType: model.Int64, Shape: model.Shape{1, 32}, Data: make([]int64, 32)}
	if _, err := s.Run(context.Background(), []model.Tensor{small}); err != nil {
		t.Errorf("run after a terminated one: %v", err)
	}
}

// TestLoad_turnsTelemetryOff loads ONNX Runtime in a child process with
// the variable unset: the library's telemetry must not start, so it writes
// no /tmp/mat-debug-PID.log.
func TestLoad_turnsTelemetryOff(t *testing.T) {
	if os.Getenv("MODELSERVE_TEST_LOAD_CHILD") == "1" {
		if _, err := onnxrt.Load(""); err != nil {
			t.Fatal(err)
		}
		return
	}
	testenv.Runtime(t) // fails clearly if the library is missing
	cmd := exec.Command(os.Args[0], "-test.run=^TestLoad_turnsTelemetryOff$")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, onnxrt.TelemetryEnv+"=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, "MODELSERVE_TEST_LOAD_CHILD=1")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("loading in a child: %v\n%s", err, out)
	}
	log := fmt.Sprintf("/tmp/mat-debug-%d.log", cmd.Process.Pid)
	if _, err := os.Stat(log); err == nil {
		os.Remove(log)
		t.Errorf("ONNX Runtime's telemetry ran: it wrote %s", log)
	}
}

func TestSession_halfPrecisionInAndOut(t *testing.T) {
	rt := testenv.Runtime(t)
	s, err := rt.NewSession(testenv.Model(t, "half"), []string{"x"}, []string{"doubled", "total"}, onnxrt.SessionOptions{IntraOpThreads: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	in, _ := model.NewTensor(model.Float16, model.Shape{2, 3})
	for i, f := range []float64{1, 2, 3, 0.5, -1, 65504} {
		in.Data.([]model.Half)[i] = model.ToHalf(f)
	}
	outs, err := s.Run(context.Background(), []model.Tensor{in})
	if err != nil {
		t.Fatal(err)
	}
	var doubled []float32
	for _, h := range outs[0].Data.([]model.Half) {
		doubled = append(doubled, h.Float32())
	}
	if outs[0].DType != model.Float16 || !slices.Equal(outs[0].Shape, model.Shape{2, 3}) ||
		fmt.Sprint(doubled) != fmt.Sprint([]float32{2, 4, 6, 1, -2, float32(math.Inf(1))}) {
		t.Errorf("doubled = %s %v %v", outs[0].DType, outs[0].Shape, doubled)
	}
	if got := outs[1].Data.([]float32); !slices.Equal(got, []float32{6, 65503.5}) {
		t.Errorf("total = %v", got)
	}
}
