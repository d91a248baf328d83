package engine

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

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

func TestModel_followsItsAliasWithoutDroppingARequest(t *testing.T) {
	reg, _ := logged(t, "iris", registry.Settings{})
	for _, v := range []string{"2", "3"} {
		if _, err := reg.Log(context.Background(), registry.LogRequest{Name: "iris", Version: v, File: testenv.Model(t, "iris")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := reg.SetAlias("iris", "prod", "1"); err != nil {
		t.Fatal(err)
	}
	m, err := Resolve(reg, "iris:prod")
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close(context.Background())
	if m.Alias() != "prod" || m.Version().Version != "1" {
		t.Fatalf("iris:prod resolved to %s (alias %q)", m.Version().Version, m.Alias())
	}
	metrics := prometheus.NewRegistry()
	var mu sync.Mutex
	var served []*Version
	err = m.Start(context.Background(), Options{Device: CPU, Workers: 1}, Env{Metrics: metrics}, func(v *Version) {
		mu.Lock()
		served = append(served, v)
		mu.Unlock()
	})
	if err != nil {
		t.Fatal(err)
	}
	current := func() *Version { mu.Lock(); defer mu.Unlock(); return served[len(served)-1] }
	old := current()
	// Its share of a process's budget, as ShareMemory gives it among
	// several models.
	old.q.SetMemoryBudget(10<<20, 5<<20)
	if err := m.Check(context.Background(), time.Second); err != nil || len(served) != 1 {
		t.Fatalf("a check with the alias unmoved: %v, %d versions handed over", err, len(served))
	}

	// A request admitted on version 1 before the move: the switch waits
	// for it, and it runs to the end on version 1.
	held, err := old.AdmitArrival(Arrival{})
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.SetAlias("iris", "prod", "2"); err != nil {
		t.Fatal(err)
	}
	switched := make(chan error, 1)
	go func() { switched <- m.Check(context.Background(), time.Minute) }()
	for deadline := time.Now().Add(30 * time.Second); current() == old; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("version 2 was never handed over")
		}
	}
	if v := current().VersionName(); v != "2" {
		t.Fatalf("handed over version %s, want 2", v)
	}
	// Version 2's queue starts from the cost version 1 learned, not from
	// a warm-up measured while version 1 kept the cores busy.
	if b := current().Limits().MemoryBudget; b != 10<<20 {
		t.Errorf("version 2's memory budget is %d, want version 1's share, %d", b, 10<<20)
	}
	of, op := old.q.Cost()
	if nf, np := current().q.Cost(); nf != of || np != op {
		t.Errorf("version 2 starts from cost %v + %v a row, version 1 had learned %v + %v", nf, np, of, op)
	}
	select {
	case err := <-switched:
		t.Fatalf("the switch ended (%v) while version 1 still held a request", err)
	case <-time.After(100 * time.Millisecond):
	}
	if outs, err := held.Run(context.Background(), irisRows(3)); err != nil || outs[0].Rows() != 3 {
		t.Fatalf("the request admitted before the move: %v", err)
	}
	held.Done()
	if err := <-switched; err != nil {
		t.Fatal(err)
	}
	if _, err := old.AdmitArrival(Arrival{}); !errors.Is(err, ErrClosed) {
		t.Errorf("version 1 still admits after the switch: %v", err)
	}
	if err := reg.Delete("iris", "1"); err != nil {
		t.Errorf("version 1, unloaded and no alias's, cannot be deleted: %v", err)
	}

	// Version 3's file is damaged: it fails to load, 2 goes on serving.
	v3, _ := reg.Get("iris", "3")
	if err := os.WriteFile(v3.ModelPath(), []byte("not a model"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := reg.SetAlias("iris", "prod", "3"); err != nil {
		t.Fatal(err)
	}
	if err := m.Check(context.Background(), time.Second); err == nil {
		t.Fatal("a switch to a damaged version succeeded")
	}
	if v := current().VersionName(); v != "2" {
		t.Fatalf("after a failed switch version %s serves, want 2", v)
	}
	if err := m.Check(context.Background(), time.Second); err != nil {
		t.Errorf("the damaged version was tried again: %v", err)
	}
	tk, err := current().AdmitArrival(Arrival{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tk.Run(context.Background(), irisRows(1)); err != nil {
		t.Errorf("version 2 after the failed switch: %v", err)
	}
	tk.Done()
	for outcome, want := range map[string]float64{"ok": 1, "failed": 1} {
		if got := testutil.ToFloat64(m.m.switches.WithLabelValues("iris", outcome)); got != want {
			t.Errorf("switches %s = %v, want %v", outcome, got, want)
		}
	}
	life, err := newProcessMetrics(metrics)
	if err != nil {
		t.Fatal(err)
	}
	for labels, want := range map[[2]string]float64{{"load", "ok"}: 2, {"load", "failed"}: 1, {"unload", "ok"}: 1} {
		if got := testutil.ToFloat64(life.loads.WithLabelValues("iris", labels[0], labels[1])); got != want {
			t.Errorf("%s %s = %v, want %v", labels[0], labels[1], got, want)
		}
	}
	if err := testutil.GatherAndCompare(metrics, strings.NewReader(""), "modelserve_model_memory_bytes"); err == nil {
		t.Error("no modelserve_model_memory_bytes for the version served")
	}
	// Version 1's series left /metrics with it.
	families, _ := metrics.Gather()
	for _, f := range families {
		for _, s := range f.GetMetric() {
			for _, l := range s.GetLabel() {
				if l.GetName() == "version" && l.GetValue() == "1" {
					t.Fatalf("%s still reports version 1", f.GetName())
				}
			}
		}
	}
}

func TestShareMemory_splitsOneBudgetAmongTheModels(t *testing.T) {
	reg, _ := logged(t, "iris", registry.Settings{})
	if _, err := reg.Log(context.Background(), registry.LogRequest{Name: "mlp", Version: "1", File: testenv.Model(t, "mlp")}); err != nil {
		t.Fatal(err)
	}
	var models []*Model
	for _, ref := range []string{"iris", "mlp"} {
		m, err := Resolve(reg, ref)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close(context.Background())
		if err := m.Start(context.Background(), Options{Device: CPU, Workers: 1}, Env{}, func(*Version) {}); err != nil {
			t.Fatal(err)
		}
		models = append(models, m)
	}
	log := slog.New(slog.DiscardHandler)
	if err := ShareMemory(models, AdmissionOptions{MemoryBudget: 64 << 20}, log); err != nil {
		t.Fatal(err)
	}
	for _, m := range models {
		m.mu.Lock()
		c := m.current.q.Config()
		m.mu.Unlock()
		if c.MemoryBudget != 32<<20 || c.MaxQueuedBytes != 16<<20 {
			t.Errorf("%s: budget %d, queued bytes %d; want half of 64 MiB, and half that", m.Name, c.MemoryBudget, c.MaxQueuedBytes)
		}
	}
	// Without a budget given: the fraction of what is left, split.
	if err := ShareMemory(models, AdmissionOptions{MemoryFraction: 0.5}, log); err != nil {
		t.Fatal(err)
	}
	a, b := models[0].current.Limits().MemoryBudget, models[1].current.Limits().MemoryBudget
	if a != b || a <= 0 {
		t.Errorf("shares %d and %d, want two equal ones", a, b)
	}
}

// front records what the engine tells it.
type front struct {
	mu     sync.Mutex
	events []string
	served map[string]*Version
}

func (f *front) Use(name string, _ model.Signature, v *Version) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.served == nil {
		f.served = map[string]*Version{}
	}
	f.served[name] = v
	state := "loading"
	if v != nil {
		state = v.VersionName()
	}
	f.events = append(f.events, "use "+name+" "+state)
	return nil
}

func (f *front) Drop(_ context.Context, name string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.served, name)
	f.events = append(f.events, "drop "+name)
}

func TestEngine_loadsUnloadsAndEvicts(t *testing.T) {
	reg, _ := logged(t, "iris", registry.Settings{})
	for _, name := range []string{"mlp", "dlrm"} {
		if _, err := reg.Log(context.Background(), registry.LogRequest{Name: name, Version: "1", File: testenv.Model(t, name)}); err != nil {
			t.Fatal(err)
		}
	}
	e, err := New(reg, Options{Device: CPU, Workers: 1}, Config{MaxLoaded: 2, EvictIdle: 50 * time.Millisecond, Drain: time.Second},
		Env{Metrics: prometheus.NewRegistry()})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	if _, err := e.Prepare([]string{"iris"}, false); err != nil {
		t.Fatal(err)
	}
	f := &front{}
	ctx := context.Background()
	if err := e.Start(ctx, f); err != nil {
		t.Fatal(err)
	}
	if err := e.Load(ctx, "mlp", ""); err != nil {
		t.Fatal(err)
	}
	// iris is used now and then; mlp not since it loaded.
	time.Sleep(60 * time.Millisecond)
	if _, err := f.served["iris"].AdmitArrival(Arrival{Bytes: 10}); err != nil {
		t.Fatal(err)
	}
	// A ticket not yet done keeps iris busy: only mlp may go.
	if err := e.Load(ctx, "dlrm", ""); err != nil {
		t.Fatal(err)
	}
	want := "use iris loading,use iris 1,use mlp loading,use mlp 1,drop mlp,use dlrm loading,use dlrm 1"
	if got := strings.Join(f.events, ","); got != want {
		t.Errorf("the front was told\n%s\nwant\n%s", got, want)
	}
	idx, err := e.Index()
	if err != nil {
		t.Fatal(err)
	}
	var states []string
	for _, en := range idx {
		states = append(states, en.Name+":"+string(en.State))
	}
	if got := strings.Join(states, " "); got != "dlrm:READY iris:READY mlp:UNAVAILABLE" {
		t.Errorf("index %s", got)
	}
	// Two loaded, iris busy, dlrm just loaded: no room, and the numbers say why.
	if err := e.Load(ctx, "mlp", ""); !errors.Is(err, ErrNoRoom) || !strings.Contains(err.Error(), "2 models are loaded") {
		t.Errorf("a third model = %v, want ErrNoRoom", err)
	}
	if err := e.Unload(ctx, "dlrm"); err != nil {
		t.Fatal(err)
	}
	if err := e.Unload(ctx, "dlrm"); !errors.Is(err, registry.ErrNotFound) {
		t.Errorf("unloading a model not loaded = %v", err)
	}
	// The unloaded version is free to delete; the served one is not.
	if err := reg.Delete("dlrm", "1"); err != nil {
		t.Errorf("deleting the unloaded dlrm: %v", err)
	}
	if err := reg.Delete("iris", "1"); !errors.Is(err, registry.ErrInUse) {
		t.Errorf("deleting the served iris = %v, want ErrInUse", err)
	}
}
