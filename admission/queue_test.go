package admission

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/gpu/gputest"
	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/workers"
)

// fixture is a queue in front of a real worker pool.
type fixture struct {
	*Queue
	pool    *workers.Pool
	metrics *prometheus.Registry
}

func newFixture(t *testing.T, name string, inputs []model.Spec, outputs []string, poolWorkers int, cfg Config) fixture {
	t.Helper()
	reg := prometheus.NewRegistry()
	pool, err := workers.Start(context.Background(), testenv.Runtime(t), workers.Model{Path: testenv.Model(t, name), Inputs: inputs, Outputs: outputs},
		workers.Config{Device: workers.CPU, Workers: poolWorkers}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(pool, cfg, reg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		q.Close()
		pool.Close(context.Background())
	})
	return fixture{q, pool, reg}
}

var encoderInputs = []model.Spec{{Name: "input_ids", DType: model.Int64, Shape: model.Shape{-1, 32}}}

// occupyRows is a batch that keeps one encoder worker busy for seconds;
// cancelling it ends the run at once.
const occupyRows = 4096

// encoderQueue is one encoder worker whose batches may hold occupyRows:
// its wait target, unless set, is long enough that batches are not cut
// to it.
func encoderQueue(t *testing.T, cfg Config) fixture {
	if cfg.MaxBatchRows == 0 {
		cfg.MaxBatchRows = occupyRows
	}
	if cfg.MaxQueueWait == 0 {
		cfg.MaxQueueWait = time.Minute
	}
	return newFixture(t, "encoder", encoderInputs, []string{"embedding"}, 1, cfg)
}

func ids(rows int) []model.Tensor {
	return []model.Tensor{{DType: model.Int64, Shape: model.Shape{int64(rows), 32}, Data: make([]int64, rows*32)}}
}

// submit admits and runs a batch in the background; the answer arrives on
// the channel.
func (f fixture) submit(ctx context.Context, inputs []model.Tensor) chan error {
	answer := make(chan error, 1)
	go func() {
		t, err := f.Admit(0)
		if err != nil {
			answer <- err
			return
		}
		defer t.Done()
		_, err = t.Run(ctx, inputs)
		answer <- err
	}()
	return answer
}

// run admits and runs a batch, returning its outputs.
func (f fixture) run(ctx context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	t, err := f.Admit(0)
	if err != nil {
		return nil, err
	}
	defer t.Done()
	return t.Run(ctx, inputs)
}

// occupy keeps the only worker busy until release is called; release
// cancels that run and returns what its caller got (any number of times).
func (f fixture) occupy(t *testing.T) (release func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := f.submit(ctx, ids(occupyRows))
	waitFor(t, func() bool { return f.gauge(t, "modelserve_workers_busy") == 1 })
	var once sync.Once
	var err error
	release = func() error {
		once.Do(func() {
			cancel()
			err = <-done
		})
		return err
	}
	t.Cleanup(func() { release() })
	return release
}

// queued submits a one-row batch and returns once it waits in the queue.
func (f fixture) queued(t *testing.T, ctx context.Context) chan error {
	t.Helper()
	before := f.pendingLen()
	answer := f.submit(ctx, ids(1))
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.pendingLen() == before+1
	})
	return answer
}

func (f fixture) family(t *testing.T, name string) *dto.MetricFamily {
	t.Helper()
	families, err := f.metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, fam := range families {
		if fam.GetName() == name {
			return fam
		}
	}
	t.Fatalf("no metric %s", name)
	return nil
}

func (f fixture) gauge(t *testing.T, name string) float64 {
	return f.family(t, name).GetMetric()[0].GetGauge().GetValue()
}

// rejections counts the rejections for reason, at every priority.
func (f fixture) rejections(t *testing.T, reason string) float64 {
	n := 0.0
	for _, m := range f.family(t, "modelserve_admission_rejections_total").GetMetric() {
		if labelOf(m.GetLabel(), "reason") == reason {
			n += m.GetCounter().GetValue()
		}
	}
	return n
}

// batches is how many ONNX Runtime calls ran, and their rows in all.
func (f fixture) batches(t *testing.T) (count uint64, rows float64) {
	h := f.family(t, "modelserve_batch_rows").GetMetric()[0].GetHistogram()
	return h.GetSampleCount(), h.GetSampleSum()
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached in 10s")
		}
		time.Sleep(time.Millisecond)
	}
}

func isRejection(err error, target error, reason string) bool {
	var r *Rejection
	return errors.Is(err, target) && errors.As(err, &r) && r.Reason == reason
}

func TestQueue_rejectsAtOnceWhenFull(t *testing.T) {
	tests := []struct {
		name   string
		cfg    Config
		inputs []model.Tensor
	}{
		// One 1-row request waits; the next does not fit.
		{"requests", Config{MaxQueuedRequests: 1}, ids(1)},
		{"rows", Config{MaxQueuedRows: 2}, ids(2)},
		{"bytes", Config{MaxQueuedBytes: 2 * 32 * 8}, ids(2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := encoderQueue(t, tt.cfg)
			release := f.occupy(t)
			waiting := f.queued(t, context.Background())

			start := time.Now()
			_, err := f.run(context.Background(), tt.inputs)
			if !isRejection(err, ErrOverloaded, ReasonQueueFull) {
				t.Fatalf("a request over the %s limit got %v", tt.name, err)
			}
			if d := time.Since(start); d > time.Second {
				t.Errorf("the rejection took %v; it must not wait", d)
			}
			if got := f.rejections(t, ReasonQueueFull); got != 1 {
				t.Errorf("queue_full rejections = %v", got)
			}
			release()
			if err := <-waiting; err != nil {
				t.Errorf("the queued request, once the worker was free: %v", err)
			}
		})
	}
}

func TestQueue_aRequestLargerThanTheQueueRunsAloneWhenItIsEmpty(t *testing.T) {
	f := encoderQueue(t, Config{MaxQueuedRows: 8, MaxBatchRows: 4})
	out, err := f.run(context.Background(), ids(20))
	if err != nil || out[0].Rows() != 20 {
		t.Fatalf("20 rows into an empty queue of 8 = %v, %v", out, err)
	}
	if count, rows := f.batches(t); count != 5 || rows != 20 {
		t.Errorf("%d batches of %v rows; want 5 pieces of 4", count, rows)
	}
	// Behind other work it waits its turn: 429, not 413.
	f = encoderQueue(t, Config{MaxQueuedRows: 8})
	f.occupy(t) // 4096 rows, admitted into the empty queue
	f.queued(t, context.Background())
	if _, err := f.run(context.Background(), ids(20)); !isRejection(err, ErrOverloaded, ReasonQueueFull) {
		t.Errorf("20 rows behind a queued request = %v, want ErrOverloaded (it fits once the queue drains)", err)
	}
}

func TestQueue_memoryBudgetBreachRejects(t *testing.T) {
	f := encoderQueue(t, Config{MemoryBudget: 1000, OutputRowBytes: 1024})
	if _, err := f.Admit(1001); !isRejection(err, ErrTooLarge, ReasonMemory) {
		t.Fatalf("a body over the whole budget = %v, want ErrTooLarge", err)
	}
	a, err := f.Admit(600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Admit(600); !isRejection(err, ErrOverloaded, ReasonMemory) {
		t.Fatalf("a body over what is left = %v, want ErrOverloaded (memory)", err)
	}
	if got := f.gauge(t, "modelserve_inflight_bytes"); got != 600 {
		t.Errorf("in-flight bytes = %v", got)
	}
	a.Done()
	b, err := f.Admit(600)
	if err != nil {
		t.Fatalf("after the first answer was written: %v", err)
	}
	// Decoded inputs and their estimated outputs count too: a 1-row
	// encoder request is 256 input bytes and 1 KiB of outputs.
	if _, err := b.Run(context.Background(), ids(1)); !isRejection(err, ErrTooLarge, ReasonMemory) {
		t.Errorf("inputs and outputs over the budget = %v", err)
	}
	b.Done()
	if got := f.gauge(t, "modelserve_inflight_bytes"); got != 0 {
		t.Errorf("in-flight bytes after every answer = %v", got)
	}
}

// deviceLimit stands in for a GPU's free memory, which NVML reports on a
// GPU machine.
type deviceLimit struct{ free atomic.Int64 }

func (d *deviceLimit) Bytes() int64 { return d.free.Load() }

func TestQueue_budgetFollowsAMovingLimit(t *testing.T) {
	dev := &deviceLimit{}
	dev.free.Store(1 << 20)
	f := encoderQueue(t, Config{MemoryBudget: 1 << 30, Limits: []Limit{dev}})
	if got := f.gauge(t, "modelserve_memory_budget_bytes"); got != 1<<20 {
		t.Errorf("budget = %v, want the device's 1 MiB", got)
	}
	a, err := f.Admit(512 << 10)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Done()
	dev.free.Store(256 << 10)
	if _, err := f.Admit(1); !isRejection(err, ErrOverloaded, ReasonMemory) {
		t.Errorf("with the device's memory gone, Admit = %v", err)
	}
	// A device with no room at all (every GPU lost or full) is a reason to
	// come back later (429), not a request too large for good (413).
	a.Done()
	dev.free.Store(0)
	_, err = f.Admit(1)
	if !isRejection(err, ErrOverloaded, ReasonMemory) || !strings.Contains(err.Error(), "no device has memory for more work now") {
		t.Errorf("with no device room, Admit = %v", err)
	}
}

func TestQueue_expiredDeadlineNeverRuns(t *testing.T) {
	f := encoderQueue(t, Config{})
	release := f.occupy(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if err := <-f.queued(t, ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("a request whose deadline passed in the queue got %v", err)
	}
	if f.pendingLen() != 0 {
		t.Error("the expired request is still queued")
	}
	release()
	time.Sleep(50 * time.Millisecond) // a dispatcher would take it now
	if count, _ := f.batches(t); count != 1 {
		t.Errorf("%d batches ran; only the occupying one should have", count)
	}
	if got := f.rejections(t, ReasonDeadline); got != 1 {
		t.Errorf("deadline rejections = %v", got)
	}
}

func TestQueue_deadlineShorterThanTheQueueIsRefusedAtOnce(t *testing.T) {
	f := encoderQueue(t, Config{})
	if _, err := f.run(context.Background(), ids(64)); err != nil { // learn the speed
		t.Fatal(err)
	}
	f.occupy(t)
	for range 4 {
		f.queued(t, context.Background())
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	// 2048 rows take the encoder seconds: they cannot finish in 10ms.
	if _, err := f.run(ctx, ids(2048)); !isRejection(err, ErrOverloaded, ReasonDeadline) {
		t.Errorf("a request that cannot make its deadline = %v", err)
	}
}

func TestQueue_aCallerThatLeavesIsDropped(t *testing.T) {
	f := encoderQueue(t, Config{})
	release := f.occupy(t)
	ctx, leave := context.WithCancel(context.Background())
	left := f.queued(t, ctx)
	leave()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Errorf("the caller that left got %v", err)
	}
	if f.pendingLen() != 0 || f.gauge(t, "modelserve_queue_requests") != 0 {
		t.Error("the abandoned request still counts as queued")
	}
	// Leaving also stops a run only that caller waits for.
	start := time.Now()
	if err := release(); !errors.Is(err, context.Canceled) {
		t.Errorf("the running request got %v", err)
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("the abandoned run took %v to stop", d)
	}
	if got := f.rejections(t, ReasonCanceled); got != 2 {
		t.Errorf("canceled = %v, want 2", got)
	}
}

var vectorsInputs = []model.Spec{
	{Name: "embedding", DType: model.Float32, Shape: model.Shape{-1, 8}},
	{Name: "weight", DType: model.Float32, Shape: model.Shape{-1}},
}

func vectorRows(rng *rand.Rand, rows int) []model.Tensor {
	emb := make([]float32, rows*8)
	for i := range emb {
		emb[i] = rng.Float32()*2 - 1
	}
	w := make([]float32, rows)
	for i := range w {
		w[i] = rng.Float32() * 3
	}
	return []model.Tensor{
		{DType: model.Float32, Shape: model.Shape{int64(rows), 8}, Data: emb},
		{DType: model.Float32, Shape: model.Shape{int64(rows)}, Data: w},
	}
}

// sameOutputs compares outputs exactly, but for the norm, whose
// reduction may round differently in another batch.
func sameOutputs(got, want []model.Tensor) error {
	for i := range want {
		if !reflect.DeepEqual(got[i].Shape, want[i].Shape) {
			return fmt.Errorf("output %d shape %v, want %v", i, got[i].Shape, want[i].Shape)
		}
		if i == 0 {
			g, w := got[i].Data.([]float32), want[i].Data.([]float32)
			for k := range w {
				if math.Abs(float64(g[k]-w[k])) > 1e-5*math.Max(1, math.Abs(float64(w[k]))) {
					return fmt.Errorf("norm %d = %v, want %v", k, g[k], w[k])
				}
			}
			continue
		}
		if !reflect.DeepEqual(got[i].Data, want[i].Data) {
			return fmt.Errorf("output %d differs", i)
		}
	}
	return nil
}

func TestQueue_coalescedBatchesReturnEachCallerItsOwnRows(t *testing.T) {
	cfg := Config{MaxBatchRows: 32, MaxBatchDelay: BatchDelay{Fixed: 2 * time.Millisecond}, MaxQueuedRows: 1 << 16, MaxQueueWait: time.Minute}
	f := newFixture(t, "vectors", vectorsInputs, []string{"norm", "scaled", "top"}, 2, cfg)
	rng := rand.New(rand.NewPCG(3, 4))
	const callers = 48
	requests := make([][]model.Tensor, callers)
	want := make([][]model.Tensor, callers)
	for i := range requests {
		rows := 1 + rng.IntN(70) // some coalesce, some split
		requests[i] = vectorRows(rng, rows)
		var err error
		// The answer of the request run alone, straight on the pool.
		if want[i], err = f.pool.Run(context.Background(), requests[i]); err != nil {
			t.Fatal(err)
		}
	}
	start := make(chan struct{})
	var wg sync.WaitGroup
	errs := make(chan error, callers)
	for i := range callers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			got, err := f.run(context.Background(), requests[i])
			if err == nil {
				err = sameOutputs(got, want[i])
			}
			if err != nil {
				errs <- fmt.Errorf("caller %d (%d rows): %w", i, requests[i][0].Rows(), err)
			}
		}()
	}
	close(start)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Without coalescing every piece (a request, or up to 32 rows of a
	// larger one) would take its own call.
	pieces := 0
	for _, r := range requests {
		pieces += (r[0].Rows() + 31) / 32
	}
	if count, _ := f.batches(t); count >= uint64(pieces) {
		t.Errorf("%d ONNX Runtime calls for %d pieces: requests were not coalesced", count, pieces)
	}
}

func TestQueue_splitRequestsReassembleInOrder(t *testing.T) {
	f := newFixture(t, "vectors", vectorsInputs, []string{"norm", "scaled", "top"}, 2, Config{MaxBatchRows: 64, MaxQueuedRows: 1 << 16, MaxQueueWait: time.Minute})
	rng := rand.New(rand.NewPCG(5, 6))
	req := vectorRows(rng, 1000)
	want, err := f.pool.Run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := f.run(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if err := sameOutputs(got, want); err != nil {
		t.Error(err)
	}
	if count, rows := f.batches(t); count != 16 || rows != 1000 {
		t.Errorf("%d batches of %v rows; want 16 pieces of at most 64", count, rows)
	}
}

func TestQueue_fixedBatchModelsAreNeverCoalesced(t *testing.T) {
	inputs := []model.Spec{{Name: "x", DType: model.Float32, Shape: model.Shape{1, 4}}}
	f := newFixture(t, "fixed", inputs, []string{"y"}, 1, Config{MaxBatchDelay: BatchDelay{Fixed: 5 * time.Millisecond}, MaxQueueWait: time.Minute})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := f.run(context.Background(), []model.Tensor{{DType: model.Float32, Shape: model.Shape{1, 4}, Data: []float32{1, 1, 1, 1}}})
			if err != nil || !reflect.DeepEqual(out[0].Data, []float32{12, 16}) {
				t.Errorf("fixed-batch answer %v, %v", out, err)
			}
		}()
	}
	wg.Wait()
	if count, rows := f.batches(t); count != 16 || rows != 16 {
		t.Errorf("%d batches of %v rows; a fixed batch of 1 takes one row per call", count, rows)
	}
}

func TestQueue_closeAnswersWhatIsQueued(t *testing.T) {
	f := encoderQueue(t, Config{})
	release := f.occupy(t)
	waiting := f.queued(t, context.Background())
	closed := make(chan struct{})
	go func() {
		f.Close()
		close(closed)
	}()
	waitFor(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.closed
	})
	if _, err := f.Admit(0); !errors.Is(err, ErrClosed) {
		t.Errorf("Admit after Close = %v", err)
	}
	// Close waits for the running batch; then the queued one is answered
	// rather than run.
	release()
	if err := <-waiting; !errors.Is(err, ErrClosed) {
		t.Errorf("a batch queued at shutdown got %v, want ErrClosed", err)
	}
	<-closed
}

func TestQueue_unboundedAdmitsEverything(t *testing.T) {
	f := encoderQueue(t, Config{Unbounded: true, MaxQueuedRequests: 1, MemoryBudget: 1})
	release := f.occupy(t)
	var answers []chan error
	for range 5 {
		answers = append(answers, f.queued(t, context.Background()))
	}
	if _, err := f.Admit(1 << 30); err != nil {
		t.Errorf("unbounded Admit = %v", err)
	}
	release()
	for _, a := range answers {
		if err := <-a; err != nil {
			t.Error(err)
		}
	}
}

// TestQueue_gpuMemoryBoundsTheRowsInFlight: the GPUs' free memory, through
// gpu.MemoryLimit over a fake device layer, caps the rows admitted at once;
// a GPU that disappears takes its room with it.
func TestQueue_gpuMemoryBoundsTheRowsInFlight(t *testing.T) {
	fake := gputest.New(1)
	const deviceRow = 1 << 20
	margin := 0.1
	total := uint64(24 << 30)
	fake.SetUsed(0, total-uint64(margin*float64(total))-100*deviceRow) // room for 100 rows
	inv := gpu.Discover(fake, func(string) (string, bool) { return "", false })
	mon, err := gpu.NewMonitor(fake, inv, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer mon.Close()
	const outRow = 1024
	hostRow := int64(encoderInputs[0].RowBytes()) + outRow
	limit, err := gpu.NewMemoryLimit(mon, []int{0}, margin, deviceRow, hostRow)
	if err != nil {
		t.Fatal(err)
	}
	if limit.Rows() != 100 {
		t.Fatalf("room for %d rows, want 100", limit.Rows())
	}
	f := encoderQueue(t, Config{MemoryBudget: 1 << 30, OutputRowBytes: outRow, Limits: []Limit{limit}})
	held := func(rows int) *Ticket {
		t.Helper()
		ticket, err := f.Admit(0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := ticket.Run(context.Background(), ids(rows)); err != nil {
			t.Fatal(err)
		}
		return ticket // its rows stay in flight until Done
	}
	a := held(60)
	if _, err := f.run(context.Background(), ids(50)); !isRejection(err, ErrOverloaded, ReasonMemory) {
		t.Errorf("60 + 50 rows with room for 100: %v", err)
	}
	b := held(40)
	a.Done()
	b.Done()
	if _, err := f.run(context.Background(), ids(101)); !isRejection(err, ErrTooLarge, ReasonMemory) {
		t.Errorf("101 rows with room for 100: %v", err)
	}
	fake.SetGone(0, true)
	mon.Sample()
	if _, err := f.Admit(0); !isRejection(err, ErrOverloaded, ReasonMemory) {
		t.Errorf("with the GPU gone: %v", err)
	}
}
