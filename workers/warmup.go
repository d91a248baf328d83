package workers

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/modelserve/modelserve/model"
)

// Cost is what one ONNX Runtime call of the model costs on this pool,
// measured at start on an idle process: Fixed before any row, PerRow for
// each row. Zero when it could not be measured. Scales says a call of
// ScaleRows rows cost no more a row than one of 64 (within scaleSlack):
// the model runs large calls as efficiently as small ones, which a model
// whose activations outgrow the caches (attention, say) does not.
type Cost struct {
	Fixed, PerRow time.Duration
	Scales        bool
}

// ScaleRows is the large call warm-up times to tell whether a model
// scales; scaleSlack how much dearer a row of it may be.
const (
	ScaleRows  = 512
	scaleSlack = 1.2
)

// warmUp runs one batch on every worker, so the first request does not pay
// for ONNX Runtime's lazy initialization, then times 1-row and k-row calls
// on the first worker to tell the fixed cost of a call from its cost per
// row. The inputs are zeros (empty strings), open dimensions 1.
//
// The two sizes are far apart (k is 64 when that is quick) and timed in
// turns, the fastest of each kept: a model loading beside one that
// serves, on a busy machine, sees its calls slowed by whatever else runs,
// and with 1 and 8 rows a single slow 8-row call had read as a cost per
// row hundreds of times the real one, later multiplied by every row of a
// large request.
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
		if _, err := p.call(ctx, w, one, rows); err != nil {
			return Cost{}, fmt.Errorf("warm-up run on worker %d: %w", w.id+1, err)
		}
	}
	if p.batch > 0 {
		return Cost{}, nil // a fixed batch size has no cost per row to tell apart
	}
	// Measuring must not make a slow model slow to load: fewer repeats
	// and fewer rows for slow calls, and no k-row timing past a second.
	w := p.workers[0]
	t1, err := timeRun(ctx, p, w, one, 1)
	if err != nil {
		return Cost{}, err
	}
	if 8*t1 > time.Second {
		return Cost{Fixed: t1}, nil // an upper bound; the auto delay caps below it anyway
	}
	// k rows in about 50 ms at most (between 8 and 64), and turns within
	// about a quarter of a second (between 2 and 7).
	k := int(min(64, max(8, int64(50*time.Millisecond/max(t1, 1)))))
	reps := int(min(7, max(2, int64(250*time.Millisecond/(time.Duration(k+1)*max(t1, 1))))))
	many, err := zeros(p.model.Inputs, k)
	if err != nil {
		return Cost{}, err
	}
	tk := time.Duration(math.MaxInt64)
	for range reps {
		d, err := timeRun(ctx, p, w, one, 1)
		if err != nil {
			return Cost{}, err
		}
		t1 = min(t1, d)
		if d, err = timeRun(ctx, p, w, many, k); err != nil {
			return Cost{}, err
		}
		tk = min(tk, d)
	}
	perRow := max(tk-t1, 0) / time.Duration(k-1)
	cost := Cost{Fixed: max(t1-perRow, 0), PerRow: perRow}
	// A fast model (64 rows well within 50 ms) also times a large call,
	// when it should take under 50 ms: the fastest of two, after one
	// that grows ONNX Runtime's arena to its size.
	if k < 64 || cost.Fixed+ScaleRows*perRow > 50*time.Millisecond {
		return cost, nil
	}
	large, err := zeros(p.model.Inputs, ScaleRows)
	if err != nil {
		return Cost{}, err
	}
	if _, err := p.call(ctx, w, large, ScaleRows); err != nil {
		return Cost{}, err
	}
	tl := time.Duration(math.MaxInt64)
	for range 2 {
		d, err := timeRun(ctx, p, w, large, ScaleRows)
		if err != nil {
			return Cost{}, err
		}
		tl = min(tl, d)
	}
	cost.Scales = float64(tl)/ScaleRows <= scaleSlack*float64(tk)/float64(k)
	return cost, nil
}

func timeRun(ctx context.Context, p *Pool, w *worker, inputs []model.Tensor, rows int) (time.Duration, error) {
	start := time.Now()
	if _, err := p.call(ctx, w, inputs, rows); err != nil {
		return 0, err
	}
	return time.Since(start), nil
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
		if _, err := p.call(ctx, w, batch, rows); err != nil {
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
