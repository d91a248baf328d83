package admission

import (
	"context"
	"errors"
	"log/slog"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/workers"
)

type testQueue struct {
	*Queue
	// poolMetrics holds the worker pool's metrics, to see a worker busy.
	poolMetrics *prometheus.Registry
}

// newQueue puts a queue of maxQueued in front of one real encoder worker.
func newQueue(t *testing.T, maxQueued int) testQueue {
	t.Helper()
	reg := prometheus.NewRegistry()
	pool, err := workers.Start(context.Background(), testenv.Runtime(t), workers.Model{
		Path:    testenv.Model(t, "encoder"),
		Inputs:  []model.Spec{{Name: "input_ids", DType: model.Int64, Shape: model.Shape{-1, 32}}},
		Outputs: []string{"embedding"},
	}, workers.Config{Device: workers.CPU, Workers: 1}, slog.New(slog.DiscardHandler), reg)
	if err != nil {
		t.Fatal(err)
	}
	q, err := New(pool, Config{MaxQueued: maxQueued}, prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		q.Close()
		pool.Close(context.Background())
	})
	return testQueue{q, reg}
}

func (q testQueue) busyWorkers(t *testing.T) float64 {
	t.Helper()
	families, err := q.poolMetrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range families {
		if f.GetName() == "modelserve_workers_busy" {
			return f.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("no modelserve_workers_busy metric")
	return 0
}

func ids(rows int) []model.Tensor {
	return []model.Tensor{{DType: model.Int64, Shape: model.Shape{int64(rows), 32}, Data: make([]int64, rows*32)}}
}

// occupy starts a batch that keeps the only worker busy for seconds, and
// returns once the worker runs it; cancel ends it early.
func occupy(t *testing.T, q testQueue) (cancel func(), done chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done = make(chan error, 1)
	go func() {
		_, err := q.Submit(ctx, ids(4096))
		done <- err
	}()
	waitFor(t, func() bool { return q.busyWorkers(t) == 1 })
	return cancel, done
}

// submitQueued submits a one-row batch behind a busy worker and returns
// once it waits in the queue; its answer arrives on the channel.
func submitQueued(t *testing.T, q testQueue, ctx context.Context) chan error {
	t.Helper()
	answer := make(chan error, 1)
	go func() {
		_, err := q.Submit(ctx, ids(1))
		answer <- err
	}()
	waitFor(t, func() bool { return len(q.jobs) == 1 })
	return answer
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

func TestQueue_runsAdmittedBatches(t *testing.T) {
	q := newQueue(t, 4)
	outs, err := q.Submit(context.Background(), ids(3))
	if err != nil {
		t.Fatal(err)
	}
	if outs[0].Rows() != 3 || outs[0].Shape[1] != 256 {
		t.Errorf("embedding shape = %v", outs[0].Shape)
	}
}

func TestQueue_rejectsAtOnceWhenFull(t *testing.T) {
	q := newQueue(t, 1)
	stop, running := occupy(t, q)
	queued := submitQueued(t, q, context.Background())

	start := time.Now()
	_, err := q.Submit(context.Background(), ids(1))
	if !errors.Is(err, ErrOverloaded) {
		t.Fatalf("Submit to a full queue = %v, want ErrOverloaded", err)
	}
	if waited := time.Since(start); waited > time.Second {
		t.Errorf("the rejection took %v; it must not wait for a worker", waited)
	}
	if got := testutil.ToFloat64(q.rejected.WithLabelValues("queue_full")); got != 1 {
		t.Errorf("queue_full rejections = %v", got)
	}
	stop()
	if err := <-running; !errors.Is(err, context.Canceled) {
		t.Errorf("the canceled running batch answered %v", err)
	}
	if err := <-queued; err != nil {
		t.Errorf("the queued batch, once a worker was free: %v", err)
	}
}

func TestQueue_dropsWorkWhoseCallerLeft(t *testing.T) {
	q := newQueue(t, 4)
	stop, running := occupy(t, q)
	ctx, leave := context.WithCancel(context.Background())
	left := submitQueued(t, q, ctx)
	leave()
	if err := <-left; !errors.Is(err, context.Canceled) {
		t.Errorf("the caller that left got %v", err)
	}
	stop()
	<-running
	// The dispatcher reaches the abandoned batch and skips it.
	waitFor(t, func() bool { return testutil.ToFloat64(q.rejected.WithLabelValues("canceled")) >= 1 })
}

func TestQueue_closeAnswersWhatIsQueued(t *testing.T) {
	q := newQueue(t, 4)
	stop, running := occupy(t, q)
	queued := submitQueued(t, q, context.Background())
	closed := make(chan struct{})
	go func() {
		q.Close()
		close(closed)
	}()
	waitFor(t, func() bool {
		q.mu.RLock()
		defer q.mu.RUnlock()
		return q.closed
	})
	if _, err := q.Submit(context.Background(), ids(1)); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close = %v", err)
	}
	// Close waits for the running batch; when it ends, the queued one is
	// answered rather than run.
	stop()
	<-running
	if err := <-queued; !errors.Is(err, ErrClosed) {
		t.Errorf("a batch queued at shutdown got %v, want ErrClosed", err)
	}
	<-closed
}
