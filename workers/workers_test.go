package workers

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
)

func TestPlanCPU(t *testing.T) {
	tests := []struct {
		name                    string
		cfg                     Config
		cpus                    int
		workers, threads        int
		oversubscribed          bool
		reasonMentionsReference bool
	}{
		{"default on 2 cores", Config{}, 2, 2, 1, false, true},
		{"default on 1 core", Config{}, 1, 1, 1, false, true},
		{"default on 16 cores", Config{}, 16, 16, 1, false, true},
		{"workers given", Config{Workers: 1}, 8, 1, 8, false, false},
		{"threads given", Config{IntraOpThreads: 2}, 4, 2, 2, false, false},
		{"more threads than cores", Config{IntraOpThreads: 8}, 4, 1, 8, true, false},
		{"reference rule asked for", Config{Workers: ReferenceWorkers(2)}, 2, 5, 1, true, false},
		{"both given", Config{Workers: 3, IntraOpThreads: 3}, 2, 3, 3, true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := PlanCPU(tt.cfg, tt.cpus)
			if p.Device != CPU || p.Workers != tt.workers || p.IntraOpThreads != tt.threads || p.Oversubscribed != tt.oversubscribed {
				t.Errorf("PlanCPU(%+v, %d) = %+v", tt.cfg, tt.cpus, p)
			}
			if got := strings.Contains(p.Reason, "reference rule"); got != tt.reasonMentionsReference {
				t.Errorf("reason %q", p.Reason)
			}
		})
	}
}

func TestPlanCUDA_oneWorkerPerGPU(t *testing.T) {
	if p := PlanCUDA(Config{}, 4); p.Workers != 4 || p.IntraOpThreads != 1 {
		t.Errorf("4 GPUs: %+v", p)
	}
	if p := PlanCUDA(Config{Workers: 8}, 4); p.Workers != 8 {
		t.Errorf("8 workers asked: %+v", p)
	}
}

func TestParseDevice(t *testing.T) {
	for in, want := range map[string]Device{"auto": Auto, "CPU": CPU, "cuda": CUDA} {
		if got, err := ParseDevice(in); err != nil || got != want {
			t.Errorf("ParseDevice(%q) = %q, %v", in, got, err)
		}
	}
	if _, err := ParseDevice("tpu"); err == nil {
		t.Error("tpu should not parse")
	}
}

func start(t *testing.T, name string, inputs []model.Spec, outputs []string, cfg Config) (*Pool, *bytes.Buffer) {
	t.Helper()
	var logs bytes.Buffer
	p, err := Start(context.Background(), testenv.Runtime(t), Model{Path: testenv.Model(t, name), Inputs: inputs, Outputs: outputs},
		cfg, slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	t.Cleanup(func() { p.Close(context.Background()) })
	return p, &logs
}

var irisInputs = []model.Spec{{Name: "features", DType: model.Float32, Shape: model.Shape{-1, 4}}}

func irisBatch() []model.Tensor {
	return []model.Tensor{{DType: model.Float32, Shape: model.Shape{2, 4}, Data: []float32{5.1, 3.5, 1.4, 0.2, 6.7, 3.0, 5.2, 2.3}}}
}

func TestStart_cudaWithoutAGPUFailsWithTheReason(t *testing.T) {
	_, err := Start(context.Background(), testenv.Runtime(t), Model{Path: testenv.Model(t, "iris"), Inputs: irisInputs, Outputs: []string{"label"}},
		Config{Device: CUDA}, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	// This machine has no GPU and the CPU build of ONNX Runtime has no
	// CUDA provider library: the error must say so.
	if err == nil || !strings.Contains(err.Error(), "--device cuda: cannot run on a GPU") || !strings.Contains(err.Error(), "libonnxruntime_providers_cuda.so is missing") {
		t.Fatalf("Start(cuda) = %v", err)
	}
}

func TestStart_autoFallsBackToTheCPUAndSaysWhy(t *testing.T) {
	p, logs := start(t, "iris", irisInputs, []string{"label"}, Config{Device: Auto})
	if p.Plan().Device != CPU {
		t.Errorf("device = %s", p.Plan().Device)
	}
	if !strings.Contains(logs.String(), "no usable GPU") || !strings.Contains(logs.String(), "reason=") {
		t.Errorf("the fallback was not logged with its reason:\n%s", logs)
	}
}

func TestPool_runsABatchInOneCall(t *testing.T) {
	p, _ := start(t, "iris", irisInputs, []string{"label", "probabilities"}, Config{Device: CPU, Workers: 2})
	outs, err := p.Run(context.Background(), irisBatch())
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(outs[0].Data, []int64{0, 2}) {
		t.Errorf("labels = %v", outs[0].Data)
	}
	if !reflect.DeepEqual(outs[1].Shape, model.Shape{2, 3}) {
		t.Errorf("probabilities shape = %v", outs[1].Shape)
	}
}

func TestPool_fixedBatchRunsInChunks(t *testing.T) {
	inputs := []model.Spec{{Name: "x", DType: model.Float32, Shape: model.Shape{1, 4}}}
	p, _ := start(t, "fixed", inputs, []string{"y"}, Config{Device: CPU, Workers: 1})
	if p.FixedBatch() != 1 {
		t.Fatalf("fixed batch = %d", p.FixedBatch())
	}
	x := []float32{1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1}
	outs, err := p.Run(context.Background(), []model.Tensor{{DType: model.Float32, Shape: model.Shape{3, 4}, Data: x}})
	if err != nil {
		t.Fatal(err)
	}
	// w = [[0 1] [2 3] [4 5] [6 7]]
	want := []float32{0, 1, 2, 3, 12, 16}
	if !reflect.DeepEqual(outs[0].Data, want) || outs[0].Rows() != 3 {
		t.Errorf("y = %v %v, want %v", outs[0].Shape, outs[0].Data, want)
	}
}

func TestPool_modelFailuresAreErrors(t *testing.T) {
	inputs := []model.Spec{{Name: "x", DType: model.Float32, Shape: model.Shape{-1, -1}}}
	p, _ := start(t, "fragile", inputs, []string{"pairs"}, Config{Device: CPU, Workers: 1})
	tests := []struct {
		name  string
		shape model.Shape
		want  string
	}{
		{"odd number of values", model.Shape{1, 3}, "Reshape"},
		{"rows not kept", model.Shape{1, 4}, "one output row per input row"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			x := make([]float32, tt.shape.Elements())
			_, err := p.Run(context.Background(), []model.Tensor{{DType: model.Float32, Shape: tt.shape, Data: x}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run() = %v, want an error containing %q", err, tt.want)
			}
		})
	}
	// The worker survives a failure.
	if _, err := p.Run(context.Background(), []model.Tensor{{DType: model.Float32, Shape: model.Shape{1, 2}, Data: []float32{1, 2}}}); err != nil {
		t.Errorf("after failures: %v", err)
	}
}

func TestPool_concurrentRunsShareTheWorkers(t *testing.T) {
	p, _ := start(t, "iris", irisInputs, []string{"label"}, Config{Device: CPU, Workers: 3})
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs, err := p.Run(context.Background(), irisBatch())
			if err == nil && !reflect.DeepEqual(outs[0].Data, []int64{0, 2}) {
				err = fmt.Errorf("labels = %v, want [0 2]", outs[0].Data)
			}
			errs <- err
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

func TestPool_runHonoursACanceledContext(t *testing.T) {
	p, _ := start(t, "iris", irisInputs, []string{"label"}, Config{Device: CPU, Workers: 1})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := p.Run(ctx, irisBatch()); err == nil {
		t.Error("a canceled run succeeded")
	}
}

func TestPool_workersComputeAtLowerPriority(t *testing.T) {
	start(t, "iris", irisInputs, []string{"label"}, Config{Device: CPU, Workers: 2})
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	lowered := 0
	for _, task := range tasks {
		b, err := os.ReadFile("/proc/self/task/" + task.Name() + "/stat")
		if err != nil {
			continue
		}
		// Field 19 is the nice value; the command (field 2) may hold
		// spaces, so count from its closing parenthesis.
		fields := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
		if len(fields) > 16 && fields[16] == strconv.Itoa(computeNice) {
			lowered++
		}
	}
	if lowered < 2 {
		t.Errorf("%d threads at nice %d; want one per worker", lowered, computeNice)
	}
}

func TestStart_warmUpMeasuresTheCostOfACall(t *testing.T) {
	// Each model shows the cost that dominates it, whatever the noise:
	// the DLRM's many small operators cost per call, the encoder's
	// attention per row.
	dlrm, logs := start(t, "dlrm", []model.Spec{
		{Name: "dense", DType: model.Float32, Shape: model.Shape{-1, 13}},
		{Name: "sparse", DType: model.Int64, Shape: model.Shape{-1, 26}},
	}, []string{"probability"}, Config{Device: CPU, Workers: 1})
	if c := dlrm.Cost(); c.Fixed <= 0 || c.Fixed > time.Second {
		t.Errorf("DLRM cost = %+v, want a fixed cost", c)
	}
	if !strings.Contains(logs.String(), "call_fixed_cost=") {
		t.Errorf("the cost is not logged:\n%s", logs)
	}
	enc, _ := start(t, "encoder", []model.Spec{{Name: "input_ids", DType: model.Int64, Shape: model.Shape{-1, 32}}}, []string{"embedding"}, Config{Device: CPU, Workers: 1})
	if c := enc.Cost(); c.PerRow <= 0 || c.PerRow > time.Second {
		t.Errorf("encoder cost = %+v, want a cost per row", c)
	}
}

func TestStart_aModelThatRefusesZerosStillServes(t *testing.T) {
	// fragile reshapes into pairs: a 1-row warm-up with width 1 fails.
	inputs := []model.Spec{{Name: "x", DType: model.Float32, Shape: model.Shape{-1, -1}}}
	p, logs := start(t, "fragile", inputs, []string{"pairs"}, Config{Device: CPU, Workers: 1})
	if !strings.Contains(logs.String(), "warm-up failed") {
		t.Errorf("the failed warm-up is not reported:\n%s", logs)
	}
	if p.Cost() != (Cost{}) {
		t.Errorf("cost after a failed warm-up = %+v", p.Cost())
	}
	if _, err := p.Run(context.Background(), []model.Tensor{{DType: model.Float32, Shape: model.Shape{1, 2}, Data: []float32{1, 2}}}); err != nil {
		t.Errorf("serving after a failed warm-up: %v", err)
	}
}
