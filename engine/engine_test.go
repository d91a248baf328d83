package engine

import (
	"context"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/registry"
)

// logged puts a test model in a fresh registry.
func logged(t *testing.T, name string, settings registry.Settings) (*registry.Registry, registry.Version) {
	t.Helper()
	reg, err := registry.Open(t.TempDir(), testenv.Runtime(t))
	if err != nil {
		t.Fatal(err)
	}
	v, err := reg.Log(context.Background(), registry.LogRequest{Name: name, Version: "1", File: testenv.Model(t, name), Settings: settings})
	if err != nil {
		t.Fatal(err)
	}
	return reg, v
}

func irisRows(rows int) []model.Tensor {
	t, _ := model.NewTensor(model.Float32, model.Shape{int64(rows), 4})
	for i := range t.Data.([]float32) {
		t.Data.([]float32)[i] = float32(i%7) / 2
	}
	return []model.Tensor{t}
}

func TestLoad_runsRowsAndCloses(t *testing.T) {
	reg, v := logged(t, "iris", registry.Settings{MaxBatchRows: 16})
	metrics := prometheus.NewRegistry()
	ver, err := Load(context.Background(), reg, v, Options{Device: CPU, Workers: 2}, Env{Metrics: metrics})
	if err != nil {
		t.Fatal(err)
	}
	if got := ver.Limits().MaxBatchRows; got != 16 {
		t.Errorf("max batch rows %d, want the version's setting 16", got)
	}
	if p := ver.Workers().Placement(); p.Device != CPU || p.Workers != 2 {
		t.Errorf("placement %+v", p)
	}
	tk, err := ver.AdmitArrival(Arrival{Bytes: 100})
	if err != nil {
		t.Fatal(err)
	}
	outs, err := tk.Run(context.Background(), irisRows(100))
	tk.Done()
	if err != nil || outs[0].Rows() != 100 {
		t.Fatalf("running 100 rows: %v", err)
	}
	// The version's metrics carry its model and version.
	families, err := metrics.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, f := range families {
		if f.GetName() == "modelserve_batch_rows" {
			for _, l := range f.GetMetric()[0].GetLabel() {
				found = found || l.GetName() == "model" && l.GetValue() == "iris"
			}
		}
	}
	if !found {
		t.Error("modelserve_batch_rows is not labelled with the model")
	}
	if err := ver.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := ver.AdmitArrival(Arrival{}); !errors.Is(err, ErrClosed) {
		t.Errorf("admitting after Close: %v, want ErrClosed", err)
	}
}

func TestLoad_optionsWinOverTheVersionsSettings(t *testing.T) {
	reg, v := logged(t, "iris", registry.Settings{MaxBatchRows: 16, MaxBatchDelay: "2ms"})
	none := BatchDelay{}
	ver, err := Load(context.Background(), reg, v, Options{Device: CPU, Workers: 1,
		Admission: AdmissionOptions{MaxBatchRows: 8, MaxBatchDelay: &none, MemoryBudget: 1 << 20}}, Env{})
	if err != nil {
		t.Fatal(err)
	}
	defer ver.Close(context.Background())
	if l := ver.Limits(); l.MaxBatchRows != 8 || l.MemoryBudget != 1<<20 {
		t.Errorf("limits %+v, want 8 rows and a 1 MiB budget", l)
	}
	// A body over the whole budget is refused for good.
	if _, err := ver.AdmitArrival(Arrival{Bytes: 2 << 20}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("a body over the budget: %v", err)
	}
}

func TestLoad_refusesAModelFileThatChanged(t *testing.T) {
	reg, v := logged(t, "iris", registry.Settings{})
	v.SHA256 = "0000000000000000000000000000000000000000000000000000000000000000"
	if _, err := Load(context.Background(), reg, v, Options{Device: CPU, Workers: 1}, Env{}); err == nil {
		t.Fatal("a model whose checksum does not match was loaded")
	}
}
