package workers

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/modelserve/modelserve/model"
)

// Cost is what one ONNX Runtime call of the model costs on this pool,
// measured at start on an idle process: Fixed before any row, PerRow for
// each row. Zero when it could not be measured.
type Cost struct {
	Fixed, PerRow time.Duration
}

// warmUp runs one batch on every worker, so the first request does not pay
// for ONNX Runtime's lazy initialization, then times 1-row and 8-row calls
// on the first worker to tell the fixed cost of a call from its cost per
// row. The inputs are zeros (empty strings), open dimensions 1.
func (p *Pool) warmUp(ctx context.Context) (Cost, error) {
	rows := 1
	if p.batch > 0 {
		rows = p.batch
	}
	one, err := zeros(p.model.Inputs, rows)
	if err != nil {
		return Cost{}, err
	}
	for _, w := range p.workers {
		if _, err := p.runOnce(ctx, w, one, rows); err != nil {
			return Cost{}, fmt.Errorf("warm-up run on worker %d: %w", w.id+1, err)
		}
	}
	if p.batch > 0 {
		return Cost{}, nil // a fixed batch size has no cost per row to tell apart
	}
	// Measuring must not make a slow model slow to load: fewer repeats
	// for slow calls, and no 8-row timing past a second.
	const k = 8
	w := p.workers[0]
	reps := 5
	t1, err := medianRun(ctx, p, w, one, 1, 1)
	if err != nil {
		return Cost{}, err
	}
	if t1 < 10*time.Millisecond {
		if t1, err = medianRun(ctx, p, w, one, 1, reps); err != nil {
			return Cost{}, err
		}
	} else {
		reps = 1
	}
	if k*t1 > time.Second {
		return Cost{Fixed: t1}, nil // an upper bound; the auto delay caps below it anyway
	}
	eight, err := zeros(p.model.Inputs, k)
	if err != nil {
		return Cost{}, err
	}
	tk, err := medianRun(ctx, p, w, eight, k, reps)
	if err != nil {
		return Cost{}, err
	}
	perRow := max(tk-t1, 0) / (k - 1)
	return Cost{Fixed: max(t1-perRow, 0), PerRow: perRow}, nil
}

func medianRun(ctx context.Context, p *Pool, w *worker, inputs []model.Tensor, rows, reps int) (time.Duration, error) {
	times := make([]time.Duration, reps)
	for i := range times {
		start := time.Now()
		if _, err := p.runOnce(ctx, w, inputs, rows); err != nil {
			return 0, err
		}
		times[i] = time.Since(start)
	}
	slices.Sort(times)
	return times[len(times)/2], nil
}

// zeros makes inputs of the given rows, open dimensions 1.
func zeros(specs []model.Spec, rows int) ([]model.Tensor, error) {
	out := make([]model.Tensor, len(specs))
	for i, s := range specs {
		t, err := s.NewRows(rows)
		if err != nil {
			return nil, err
		}
		out[i] = t
	}
	return out, nil
}

// measureRows is the batch whose GPU memory warm-up measures.
const measureRows = 64

// measureDeviceMemory runs one batch of measureRows rows on the first
// worker of each GPU and reads how much the GPU's used memory grew: the
// activations ONNX Runtime's arena had to add for those rows. The largest
// growth per row over the GPUs is the estimate; 0 when no GPU grew (the
// arena already had room), and the caller falls back on its own.
func (p *Pool) measureDeviceMemory(ctx context.Context, mem DeviceMemory) (int64, error) {
	rows := measureRows
	if p.batch > 0 {
		rows = p.batch
	}
	batch, err := zeros(p.model.Inputs, rows)
	if err != nil {
		return 0, err
	}
	var perRow int64
	seen := map[int]bool{}
	for _, w := range p.workers {
		if w.gpu < 0 || seen[w.gpu] {
			continue
		}
		seen[w.gpu] = true
		before, err := mem.MemoryUsed(ctx, w.gpu)
		if err != nil {
			return 0, err
		}
		if _, err := p.runOnce(ctx, w, batch, rows); err != nil {
			return 0, fmt.Errorf("a %d-row batch on GPU %d: %w", rows, w.gpu, err)
		}
		after, err := mem.MemoryUsed(ctx, w.gpu)
		if err != nil {
			return 0, err
		}
		if after > before {
			perRow = max(perRow, int64(after-before)/int64(rows))
		}
	}
	return perRow, nil
}
