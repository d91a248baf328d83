package admission

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/model"
)

// stubborn is a runner whose calls end only when the test says, whatever
// their context: a call that reads its inputs after its caller left.
type stubborn struct {
	started chan int
	finish  chan struct{}
}

func (s *stubborn) Run(_ context.Context, inputs []model.Tensor) ([]model.Tensor, error) {
	s.started <- inputs[0].Rows()
	<-s.finish
	return inputs, nil
}
func (s *stubborn) Size() int       { return 1 }
func (s *stubborn) FixedBatch() int { return 0 }

// TestTicket_runBorrowedReleasesOnceNothingReadsTheInputs: the memory a
// request lends goes back exactly once, and never while a call may still
// read it, however the request ends.
func TestTicket_runBorrowedReleasesOnceNothingReadsTheInputs(t *testing.T) {
	tests := []struct {
		name string
		rows int
		// leave: the caller gives up once this many calls have started
		// (-1: never), then the calls still running are let finish.
		leave   int
		occupy  bool // another request holds the worker first
		closed  bool // the queue is closed before the request comes
		wantErr error
	}{
		{name: "runs to the end", rows: 1, leave: -1},
		{name: "split into pieces that run in turn", rows: 8, leave: -1},
		{name: "refused", rows: 1, leave: -1, closed: true, wantErr: ErrClosed},
		{name: "caller leaves while queued", rows: 1, leave: 0, occupy: true, wantErr: context.Canceled},
		{name: "caller leaves while its call runs", rows: 1, leave: 1, wantErr: context.Canceled},
		{name: "caller leaves between pieces", rows: 8, leave: 1, wantErr: context.Canceled},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := &stubborn{started: make(chan int, 16), finish: make(chan struct{}, 16)}
			q, err := New(r, Config{MaxBatchRows: 4, MaxQueueWait: time.Minute, CallFixedCost: time.Millisecond}, prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			defer q.Close()
			if tt.occupy {
				done := make(chan submitted, 1)
				if err := submit(q, Normal, "other", 0, 1, done); err != nil {
					t.Fatal(err)
				}
				<-r.started
				defer func() { r.finish <- struct{}{}; <-done }()
			}
			var released atomic.Int32
			release := func() { released.Add(1) }
			tk, err := q.Admit(0)
			if err != nil {
				t.Fatal(err)
			}
			defer tk.Done()
			if tt.closed {
				q.Close() // after admission: the queue refuses the rows
			}
			ctx, leave := context.WithCancel(context.Background())
			defer leave()
			answer := make(chan error, 1)
			go func() {
				_, err := tk.RunBorrowed(ctx, rowsOfValue(1, tt.rows), release)
				answer <- err
			}()
			running := 0
			if tt.leave >= 0 {
				for range tt.leave {
					<-r.started
					running++
				}
				if tt.occupy {
					waitFor(t, func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.pendingLen() == 1 })
				}
				leave()
				if err := <-answer; !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
				if running > 0 && released.Load() != 0 {
					t.Fatal("released while a call still reads the inputs")
				}
				for range running {
					r.finish <- struct{}{}
				}
			} else if !tt.closed {
				for range (tt.rows + 3) / 4 {
					<-r.started
					if released.Load() != 0 {
						t.Fatal("released before every piece ran")
					}
					r.finish <- struct{}{}
				}
			}
			if !tt.closed && tt.leave < 0 {
				if err := <-answer; err != nil {
					t.Fatal(err)
				}
			} else if tt.closed {
				if err := <-answer; !errors.Is(err, tt.wantErr) {
					t.Fatalf("got %v, want %v", err, tt.wantErr)
				}
			}
			waitFor(t, func() bool { return released.Load() != 0 })
			time.Sleep(10 * time.Millisecond)
			if n := released.Load(); n != 1 {
				t.Fatalf("released %d times", n)
			}
		})
	}
}
