package inferencelog

import (
	"context"
	"testing"

	"github.com/modelserve/modelserve/model"
)

// BenchmarkLog_write4096: the writer's time for one logged request of
// 4096 rows of 64 FP32 features and 8 outputs (the MLP's), files and all.
func BenchmarkLog_write4096(b *testing.B) {
	const rows = 4096
	in, _ := model.NewTensor(model.Float32, model.Shape{rows, 64})
	out, _ := model.NewTensor(model.Float32, model.Shape{rows, 8})
	for i := range in.Data.([]float32) {
		in.Data.([]float32)[i] = float32(i%1000) / 7
	}
	for i := range out.Data.([]float32) {
		out.Data.([]float32)[i] = float32(i%100) / 3
	}
	r := &Record{Model: "mlp", Version: "1", Function: "predict", Protocol: "gateway", Status: 200,
		InputNames: []string{"x"}, Inputs: []model.Tensor{in}, OutputNames: []string{"y"}, Outputs: []model.Tensor{out}}
	l, err := Open(Config{Dir: b.TempDir(), Sample: 1})
	if err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		l.write(r)
	}
	l.finish()
	b.StopTimer()
	l.mu.Lock()
	l.closed = true
	close(l.queue)
	l.mu.Unlock()
	<-l.done
	l.Close(context.Background())
}
