package workers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/gpu/gputest"
	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/onnxrt"
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

// gpus fakes n GPUs behind a real monitor; the test may fill or remove
// them through f.
func gpus(t *testing.T, n int, adjust func(f *gputest.Fake)) (*gputest.Fake, gpu.Inventory, *gpu.Monitor) {
	t.Helper()
	f := gputest.New(n)
	if adjust != nil {
		adjust(f)
	}
	inv := gpu.Discover(f, func(string) (string, bool) { return "", false })
	m, err := gpu.NewMonitor(f, inv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return f, inv, m
}

func TestPlanCUDA_spreadsWorkersOverTheGPUs(t *testing.T) {
	tests := []struct {
		name   string
		n      int
		adjust func(*gputest.Fake)
		cfg    Config
		want   []int
		reason string
		err    string
	}{
		{"one worker per GPU", 4, nil, Config{}, []int{0, 1, 2, 3}, "1 worker(s) on each of 4 GPU(s)", ""},
		{"two per GPU, interleaved", 2, nil, Config{WorkersPerGPU: 2}, []int{0, 1, 0, 1}, "2 worker(s) on each of 2 GPU(s)", ""},
		{"a total spread in turn", 2, nil, Config{Workers: 3}, []int{0, 1, 0}, "3 workers spread over 2 GPU(s)", ""},
		{"a full GPU gets none", 3, func(f *gputest.Fake) { f.SetUsed(1, 23<<30) }, Config{CUDA: CUDAConfig{MinFreeBytes: 2 << 30}},
			[]int{0, 2}, "GPU 1 has 1024 MiB free, under the 2048 MiB needed", ""},
		{"a GPU lost before discovery is not listed", 2, func(f *gputest.Fake) { f.SetGone(0, true) }, Config{}, []int{0}, "1 worker(s) on each of 1 GPU(s)", ""},
		{"every GPU full", 1, func(f *gputest.Fake) { f.SetUsed(0, 24<<30) }, Config{CUDA: CUDAConfig{MinFreeBytes: 1}},
			nil, "", "no GPU can take a worker: GPU 0 has 0 MiB free"},
		{"no GPU at all", 0, nil, Config{}, nil, "", "NVML lists no GPU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, inv, m := gpus(t, tt.n, tt.adjust)
			tt.cfg.GPUs, tt.cfg.Memory = inv, m
			p, err := PlanCUDA(tt.cfg)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("error %v, want %q", err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(p.GPUs, tt.want) || p.Workers != len(tt.want) || p.IntraOpThreads != 1 || p.Device != CUDA {
				t.Errorf("plan %+v, want workers on GPUs %v", p, tt.want)
			}
			if !strings.Contains(p.Reason, tt.reason) {
				t.Errorf("reason %q, want %q in it", p.Reason, tt.reason)
			}
		})
	}
	// A GPU that stops answering after discovery gets no worker.
	f, inv, m := gpus(t, 2, nil)
	f.SetGone(0, true)
	m.Sample()
	if p, err := PlanCUDA(Config{GPUs: inv, Memory: m}); err != nil || !reflect.DeepEqual(p.GPUs, []int{1}) || !strings.Contains(p.Reason, "GPU 0 does not answer") {
		t.Errorf("a lost GPU: %+v, %v", p, err)
	}
	// Without NVML, the reason is NVML's.
	if _, err := PlanCUDA(Config{GPUs: gpu.Discover(gputest.NoLibrary(), os.LookupEnv)}); !errors.Is(err, gpu.ErrNoLibrary) {
		t.Errorf("without NVML: %v", err)
	}
}

func TestCUDAConfig_providerSettings(t *testing.T) {
	no := false
	tests := []struct {
		cfg  CUDAConfig
		want map[string]string
		err  string
	}{
		{CUDAConfig{}, map[string]string{"arena_extend_strategy": "kSameAsRequested", "do_copy_in_default_stream": "1"}, ""},
		{CUDAConfig{MemLimit: 8 << 30, ArenaExtendStrategy: NextPowerOfTwo, ConvAlgoSearch: "heuristic", CopyInDefaultStream: &no},
			map[string]string{"arena_extend_strategy": "kNextPowerOfTwo", "do_copy_in_default_stream": "0", "gpu_mem_limit": "8589934592", "cudnn_conv_algo_search": "HEURISTIC"}, ""},
		{CUDAConfig{ArenaExtendStrategy: "kBalloon"}, nil, `arena extend strategy "kBalloon"`},
		{CUDAConfig{ConvAlgoSearch: "fastest"}, nil, `cuDNN convolution search "fastest"`},
		{CUDAConfig{MemLimit: -1}, nil, "GPU memory limit -1"},
	}
	for _, tt := range tests {
		err := tt.cfg.Validate()
		if tt.err != "" {
			if err == nil || !strings.Contains(err.Error(), tt.err) {
				t.Errorf("Validate(%+v) = %v, want %q", tt.cfg, err, tt.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(tt.cfg.Settings(), tt.want) {
			t.Errorf("Settings(%+v) = %v, %v; want %v", tt.cfg, tt.cfg.Settings(), err, tt.want)
		}
	}
}

// TestDiagnose_namesTheMissingPiece: a provider library missing, or a CUDA
// library the provider needs.
func TestDiagnose_namesTheMissingPiece(t *testing.T) {
	dir := t.TempDir()
	rt := &onnxrt.Runtime{LibraryPath: filepath.Join(dir, "libonnxruntime.so.1"), Version: "1.29.0"}
	loadErr := errors.New("Failed to load library libonnxruntime_providers_cuda.so with error: libcublasLt.so.12: cannot open shared object file: No such file or directory")
	if err := diagnose(rt, loadErr); !strings.Contains(err.Error(), "the CUDA provider library is missing") {
		t.Errorf("no provider library: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "libonnxruntime_providers_cuda.so"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := diagnose(rt, loadErr); !strings.Contains(err.Error(), "CUDA libraries are missing: libcublasLt.so.12 cannot be loaded") {
		t.Errorf("no cuBLAS: %v", err)
	}
	if err := diagnose(rt, errors.New("CUDA failure 100: no CUDA-capable device is detected")); !strings.Contains(err.Error(), "the CUDA execution provider failed to start: CUDA failure 100") {
		t.Errorf("another failure: %v", err)
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
	_, inv, m := gpus(t, 2, nil)
	tests := []struct {
		name string
		cfg  Config
		want string
	}{
		// This machine: no NVIDIA driver.
		{"no NVML", Config{Device: CUDA, GPUs: gpu.Discover(gpu.NewNVML(), func(string) (string, bool) { return "", false })}, "no NVML"},
		{"GPUs hidden", Config{Device: CUDA, GPUs: gpu.Discover(gputest.New(2), func(k string) (string, bool) { return "", k == "CUDA_VISIBLE_DEVICES" })}, "CUDA_VISIBLE_DEVICES=\"\" hides every GPU"},
		// GPUs, but the CPU build of ONNX Runtime has no CUDA provider.
		{"no provider library", Config{Device: CUDA, GPUs: inv, Memory: m}, "the CUDA provider library is missing"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Start(context.Background(), testenv.Runtime(t), Model{Path: testenv.Model(t, "iris"), Inputs: irisInputs, Outputs: []string{"label"}},
				tt.cfg, slog.New(slog.DiscardHandler), prometheus.NewRegistry())
			if err == nil || !strings.Contains(err.Error(), "--device cuda: cannot run on a GPU") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Start(cuda) = %v, want %q", err, tt.want)
			}
		})
	}
}

// TestStart_autoFallsBackToTheCPUAndSaysWhy: GPUs NVML sees, a provider
// that does not load; the pool runs on the CPU and says why in the log
// and in its metrics.
func TestStart_autoFallsBackToTheCPUAndSaysWhy(t *testing.T) {
	_, inv, m := gpus(t, 2, nil)
	var logs bytes.Buffer
	reg := prometheus.NewRegistry()
	p, err := Start(context.Background(), testenv.Runtime(t), Model{Path: testenv.Model(t, "iris"), Inputs: irisInputs, Outputs: []string{"label"}},
		Config{Device: Auto, Workers: 2, GPUs: inv, Memory: m}, slog.New(slog.NewTextHandler(&logs, nil)), reg)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	if p.Plan().Device != CPU || !strings.Contains(p.Plan().Fallback, "CUDA provider library is missing") {
		t.Errorf("plan %+v", p.Plan())
	}
	if !strings.Contains(logs.String(), "no usable GPU") || !strings.Contains(logs.String(), "level=WARN") {
		t.Errorf("the fallback was not logged loudly with its reason:\n%s", logs.String())
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var info, placement []string
	for _, mf := range mfs {
		for _, mm := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range mm.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			switch mf.GetName() {
			case "modelserve_worker_info":
				info = append(info, labels["worker"]+"="+labels["device"]+"/"+labels["provider"])
			case "modelserve_device_info":
				placement = append(placement, labels["requested"]+"->"+labels["device"]+": "+labels["fallback_reason"])
			}
		}
	}
	slices.Sort(info)
	if !slices.Equal(info, []string{"0=cpu/CPUExecutionProvider", "1=cpu/CPUExecutionProvider"}) {
		t.Errorf("worker info %v", info)
	}
	if len(placement) != 1 || !strings.HasPrefix(placement[0], "auto->cpu: the CUDA provider library is missing") {
		t.Errorf("device info %v", placement)
	}
}

// fakeWorkerGPU stands a CPU worker in for one on GPU 0, so that warm-up's
// measurement can be driven through the fake device layer: each run grows
// the fake GPU's used memory as an arena would.
type growingMemory struct {
	*gpu.Monitor
	f    *gputest.Fake
	grow uint64
}

func (g growingMemory) MemoryUsed(ctx context.Context, k int) (uint64, error) {
	used, err := g.Monitor.MemoryUsed(ctx, k)
	g.f.AddUsed(k, g.grow) // the next read sees what this batch added
	return used, err
}

func TestMeasureDeviceMemory_growthPerRow(t *testing.T) {
	f, _, m := gpus(t, 1, nil)
	p, _ := start(t, "iris", irisInputs, []string{"label"}, Config{Device: CPU, Workers: 1})
	p.workers[0].gpu = 0
	perRow, err := p.measureDeviceMemory(context.Background(), growingMemory{Monitor: m, f: f, grow: 64 * 1000})
	if err != nil || perRow != 1000 {
		t.Errorf("measured %d bytes per row (%v), want 1000", perRow, err)
	}
	perRow, err = p.measureDeviceMemory(context.Background(), growingMemory{Monitor: m, f: f})
	if err != nil || perRow != 0 {
		t.Errorf("no growth measured as %d bytes per row (%v), want 0", perRow, err)
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
	if !strings.Contains(logs.String(), "call_fixed_cost=") || !strings.Contains(logs.String(), "large_calls_scale=") {
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
