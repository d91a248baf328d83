package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/valyala/fasthttp"

	"github.com/modelserve/modelserve/engine"
	"github.com/modelserve/modelserve/gpu"
	"github.com/modelserve/modelserve/internal/loadgen"
	"github.com/modelserve/modelserve/model"
)

// checkAnswer sends one request and checks it is answered 200 with one
// row per row sent, in order.
func checkAnswer(url string, body []byte, rows int) error {
	tg, err := loadgen.NewTarget(url, 1)
	if err != nil {
		return err
	}
	req, resp := tg.Request(body), fasthttp.AcquireResponse()
	defer fasthttp.ReleaseRequest(req)
	defer fasthttp.ReleaseResponse(resp)
	if err := tg.Do(req, resp); err != nil {
		return fmt.Errorf("a first request of %d rows: %w", rows, err)
	}
	if resp.StatusCode() != fasthttp.StatusOK {
		return fmt.Errorf("a first request of %d rows: %d %s", rows, resp.StatusCode(), errorText(resp.Body()))
	}
	var answer struct {
		Data [][]json.RawMessage `json:"data"`
	}
	if err := json.Unmarshal(resp.Body(), &answer); err != nil {
		return fmt.Errorf("a first request of %d rows: the answer is not the gateway's JSON: %w", rows, err)
	}
	if len(answer.Data) != rows {
		return fmt.Errorf("a first request of %d rows: %d rows answered", rows, len(answer.Data))
	}
	for i, r := range answer.Data {
		if len(r) != 2 || string(r[0]) != strconv.Itoa(i) {
			return fmt.Errorf("a first request of %d rows: answer row %d is %s", rows, i, r)
		}
	}
	return nil
}

// rawRate runs in through the workers' sessions from as many goroutines
// as there are workers (n), with no HTTP and no admission: the ceiling /predict
// is held against. Each worker is warmed with one call; then rows are
// counted for d, or, when one call takes longer than d, over one more
// call on every worker.
func rawRate(ctx context.Context, pool *engine.Workers, n int, in []model.Tensor, d time.Duration) (rowsPerSec float64, err error) {
	rows := int64(in[0].Rows())
	each := func(f func(i int) error) error {
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				errs[i] = f(i)
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				return err // the workers run the same call: one error says it
			}
		}
		return nil
	}
	start := time.Now()
	if err := each(func(int) error { _, err := pool.Run(ctx, in); return err }); err != nil {
		return 0, err
	}
	if call := time.Since(start); call >= d {
		start = time.Now()
		if err := each(func(int) error { _, err := pool.Run(ctx, in); return err }); err != nil {
			return 0, err
		}
		return float64(int64(n)*rows) / time.Since(start).Seconds(), nil
	}
	var done atomic.Bool
	var total atomic.Int64
	t0 := time.Now()
	time.AfterFunc(d, func() { done.Store(true) })
	err = each(func(int) error {
		for !done.Load() {
			if _, err := pool.Run(ctx, in); err != nil {
				return err
			}
			total.Add(rows)
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	// Calls that end after the window count, and so does their time.
	return float64(total.Load()) / time.Since(t0).Seconds(), nil
}

// randomInputs makes rows of every input, open dimensions 1: floats in
// [-1, 1), integers 0 to 3 (valid indices for any table of four rows or
// more), booleans, and short strings.
func randomInputs(specs []model.Spec, rows int) ([]model.Tensor, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	out := make([]model.Tensor, len(specs))
	for i, s := range specs {
		t, err := s.NewRows(rows)
		if err != nil {
			return nil, err
		}
		switch d := t.Data.(type) {
		case []float32:
			for k := range d {
				d[k] = rng.Float32()*2 - 1
			}
		case []float64:
			for k := range d {
				d[k] = rng.Float64()*2 - 1
			}
		case []model.Half:
			for k := range d {
				d[k] = model.ToHalf(rng.Float64()*2 - 1)
			}
		case []int8:
			fillInts(d, rng)
		case []int16:
			fillInts(d, rng)
		case []int32:
			fillInts(d, rng)
		case []int64:
			fillInts(d, rng)
		case []uint8:
			fillInts(d, rng)
		case []uint16:
			fillInts(d, rng)
		case []uint32:
			fillInts(d, rng)
		case []uint64:
			fillInts(d, rng)
		case []bool:
			for k := range d {
				d[k] = rng.IntN(2) == 1
			}
		case []string:
			for k := range d {
				d[k] = string(rune('a' + rng.IntN(26)))
			}
		}
		out[i] = t
	}
	return out, nil
}

func fillInts[T int8 | int16 | int32 | int64 | uint8 | uint16 | uint32 | uint64](d []T, rng *rand.Rand) {
	for k := range d {
		d[k] = T(rng.IntN(4))
	}
}

func sliceRows(in []model.Tensor, rows int) []model.Tensor {
	out := make([]model.Tensor, len(in))
	for i, t := range in {
		out[i] = t.SliceRows(0, rows)
	}
	return out
}

// gatewayBody writes the first rows of inputs as the gateway sends them:
// {"data": [[row, input1, input2, ...], ...]}, one argument per input.
func gatewayBody(inputs []model.Tensor, rows int) []byte {
	b := []byte(`{"data":[`)
	writers := make([]model.ValueWriter, len(inputs))
	for i, t := range inputs {
		writers[i] = model.JSONWriter(t)
	}
	for r := range rows {
		if r > 0 {
			b = append(b, ',')
		}
		b = append(b, '[')
		b = strconv.AppendInt(b, int64(r), 10)
		for i, t := range inputs {
			b = append(b, ',')
			// Rank-1 inputs take a scalar a row, the others nested arrays
			// of the row's shape, as the gateway sends them.
			b = model.AppendJSONValue(b, writers[i], t.Shape[1:], r*t.RowElements())
		}
		b = append(b, ']')
	}
	return append(b, "]}"...)
}

// memoryInUse is the GPUs' used memory, or this process's resident
// memory when there is no GPU monitor.
func memoryInUse(watch *gpu.Monitor, gpus int) int64 {
	if watch == nil {
		n, _ := engine.ResidentBytes()
		return n
	}
	watch.Sample()
	var used uint64
	for k := range gpus {
		if s, ok := watch.Latest(k); ok {
			used += s.MemoryUsed
		}
	}
	return int64(used)
}
