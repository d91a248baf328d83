package main

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	ort "github.com/yalue/onnxruntime_go"

	"github.com/modelserve/modelserve/engine"
)

// measureRaw runs the plan's sessions in this process, each on its own
// goroutine with tensors bound once: the ceiling /predict is held against.
// It warms up for a second and counts rows in a window of d.
func measureRaw(path string, m benchModel, batch int, p engine.Plan, d time.Duration) (float64, error) {
	var rows atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, p.Workers)
	stop := make(chan struct{})
	names := make([]string, len(m.inputs))
	for i, in := range m.inputs {
		names[i] = in.name
	}
	for range p.Workers {
		opts, err := ort.NewSessionOptions()
		if err != nil {
			return 0, err
		}
		opts.SetIntraOpNumThreads(p.IntraOpThreads)
		opts.SetInterOpNumThreads(1)
		if p.Workers > 1 {
			opts.AddSessionConfigEntry("session.intra_op.allow_spinning", "0")
		}
		ins, err := inputTensors(m, batch)
		if err != nil {
			return 0, err
		}
		out, err := ort.NewEmptyTensor[float32](ort.NewShape(int64(batch), int64(m.outSize)))
		if err != nil {
			return 0, err
		}
		sess, err := ort.NewAdvancedSession(path, names, []string{m.output}, ins, []ort.Value{out}, opts)
		opts.Destroy()
		if err != nil {
			return 0, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() {
				sess.Destroy()
				out.Destroy()
				for _, v := range ins {
					v.Destroy()
				}
			}()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := sess.Run(); err != nil {
					errs <- err
					return
				}
				rows.Add(int64(batch))
			}
		}()
	}
	time.Sleep(time.Second)
	before, t0 := rows.Load(), time.Now()
	time.Sleep(d)
	after, elapsed := rows.Load(), time.Since(t0)
	close(stop)
	wg.Wait()
	select {
	case err := <-errs:
		return 0, err
	default:
	}
	return float64(after-before) / elapsed.Seconds(), nil
}

func inputTensors(m benchModel, batch int) ([]ort.Value, error) {
	rng := rand.New(rand.NewPCG(1, 2))
	var vals []ort.Value
	for _, in := range m.inputs {
		shape := ort.NewShape(int64(batch), int64(in.width))
		var v ort.Value
		var err error
		if in.vocab > 0 {
			data := make([]int64, batch*in.width)
			for i := range data {
				data[i] = rng.Int64N(int64(in.vocab))
			}
			v, err = ort.NewTensor(shape, data)
		} else {
			data := make([]float32, batch*in.width)
			for i := range data {
				data[i] = rng.Float32()*2 - 1
			}
			v, err = ort.NewTensor(shape, data)
		}
		if err != nil {
			return nil, err
		}
		vals = append(vals, v)
	}
	return vals, nil
}
