package engine

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"time"

	"github.com/modelserve/modelserve/admission"
	"github.com/modelserve/modelserve/internal/bytesize"
	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/registry"
)

// Engine serves the models of a registry to a front: those named at
// start, and those loaded and unloaded while it runs (the model
// repository API), each a Model that follows its alias, all within one
// memory budget. Loads and unloads run one at a time.
type Engine struct {
	reg   *registry.Registry
	o     Options
	cfg   Config
	env   Env
	front Front

	// ops runs one load or unload at a time: the memory they are
	// measured by is the process's.
	ops sync.Mutex

	mu     sync.Mutex
	models map[string]*slot
	// failed is why the last load of a model not loaded failed.
	failed map[string]string
	// overhead is the least host memory a load took beyond the copies of
	// its file, for estimating the next (-1: none measured yet).
	overhead int64
	// modelBudget is the host memory loaded models may hold.
	modelBudget int64
	started     bool
}

// Config is how the engine manages its models.
type Config struct {
	// FollowInterval is how often a model named by an alias checks
	// whether it moved; Drain how long a version being replaced or
	// unloaded may take to finish what it admitted.
	FollowInterval, Drain time.Duration
	// ModelMemory is the host memory the loaded models may hold together
	// (0: the share of the memory limit the request budget leaves,
	// 1 − MemoryFraction, less what the process held before any model).
	ModelMemory int64
	// MaxLoaded bounds how many models are loaded at once (0: no bound).
	MaxLoaded int
	// EvictIdle lets a load that needs room unload models that took no
	// request for this long, least recently used first (0: a load that
	// does not fit is refused).
	EvictIdle time.Duration
}

// Front is what the engine serves its models through: Use points a
// model's requests at v (nil while it loads: the front answers that it is
// not ready), Drop takes the model away and returns once the requests
// that reached it have been answered (or ctx ends).
type Front interface {
	Use(name string, sig model.Signature, v *Version) error
	Drop(ctx context.Context, name string)
}

// State is where a model stands, as the model repository API names it.
type State string

const (
	Ready       State = "READY"
	Loading     State = "LOADING"
	Unloading   State = "UNLOADING"
	Unavailable State = "UNAVAILABLE"
)

type slot struct {
	m     *Model
	state State
	// size is the model file's bytes.
	size int64
}

// ErrNoRoom is a load refused because the models loaded leave no room.
var ErrNoRoom = errors.New("no room to load the model")

// New is an engine over reg that runs versions with o.
func New(reg *registry.Registry, o Options, cfg Config, env Env) (*Engine, error) {
	if cfg.MaxLoaded < 0 || cfg.ModelMemory < 0 || cfg.EvictIdle < 0 {
		return nil, errors.New("model limits must not be negative")
	}
	e := &Engine{reg: reg, o: o, cfg: cfg, env: env, models: map[string]*slot{}, failed: map[string]string{}, overhead: -1}
	if err := e.sizeBudget(); err != nil {
		return nil, err
	}
	return e, nil
}

// sizeBudget sets the models' memory budget: the one configured, else
// the share of the memory limit requests do not take, less what the
// process holds now (before any model).
func (e *Engine) sizeBudget() error {
	if e.cfg.ModelMemory > 0 {
		e.modelBudget = e.cfg.ModelMemory
		return nil
	}
	limit, _, err := admission.MemoryLimit()
	if err != nil {
		return err
	}
	resident, err := admission.ResidentBytes()
	if err != nil {
		return fmt.Errorf("reading this process's memory use: %w", err)
	}
	fraction := e.o.Admission.MemoryFraction
	if fraction <= 0 || fraction > 1 {
		fraction = DefaultMemoryFraction
	}
	e.modelBudget = max(0, int64(float64(limit-resident)*(1-fraction)))
	return nil
}

// Prepare resolves the models to serve from the start (refs, or every
// model in the registry with all) and holds their versions, so the front
// can lay out their routes before they load (Start).
func (e *Engine) Prepare(refs []string, all bool) ([]*Model, error) {
	switch {
	case all && len(refs) > 0:
		return nil, errors.New("give --model or --all, not both")
	case all:
		versions, err := e.reg.List()
		if err != nil {
			return nil, err
		}
		for _, v := range versions {
			if !slices.Contains(refs, v.Name) {
				refs = append(refs, v.Name)
			}
		}
		if len(refs) == 0 {
			return nil, fmt.Errorf("registry %s holds no model to serve", e.reg.Root())
		}
	case len(refs) == 0:
		return nil, errors.New("name a model to serve with --model NAME[:VERSION], or serve every one with --all")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var models []*Model
	for _, ref := range refs {
		m, err := Resolve(e.reg, ref)
		if err == nil && e.models[m.Name] != nil {
			m.Close(context.Background())
			err = fmt.Errorf("model %s is named twice; one server serves one version of each model", m.Name)
		}
		if err != nil {
			for _, m := range models {
				delete(e.models, m.Name)
				m.Close(context.Background())
			}
			return nil, err
		}
		e.models[m.Name] = &slot{m: m, state: Loading, size: m.pending.Size}
		models = append(models, m)
	}
	return models, nil
}

// Start loads the prepared models into front, then follows their
// aliases and shares the memory budget among them.
func (e *Engine) Start(ctx context.Context, front Front) error {
	e.ops.Lock()
	defer e.ops.Unlock()
	e.mu.Lock()
	e.front, e.started = front, true
	var slots []*slot
	for _, s := range e.models {
		slots = append(slots, s)
	}
	e.mu.Unlock()
	slices.SortFunc(slots, func(a, b *slot) int { return cmp.Compare(a.m.Name, b.m.Name) })
	for _, s := range slots {
		if err := e.start(ctx, s); err != nil {
			return err
		}
	}
	return e.share()
}

// start loads a slot's model into the front and follows its alias.
// Called with ops held.
func (e *Engine) start(ctx context.Context, s *slot) error {
	m := s.m
	sig := m.pending.Signature
	if err := e.front.Use(m.Name, sig, nil); err != nil {
		return err
	}
	err := m.Start(ctx, e.o, e.env, func(v *Version) {
		if err := e.front.Use(m.Name, sig, v); err != nil {
			e.env.log().Error("cannot serve the version loaded", "model", m.Name, "version", v.VersionName(), "error", err.Error())
		}
	})
	if err != nil {
		e.front.Drop(context.Background(), m.Name)
		e.mu.Lock()
		delete(e.models, m.Name)
		e.failed[m.Name] = err.Error()
		e.mu.Unlock()
		m.Close(context.Background())
		return err
	}
	e.mu.Lock()
	s.state = Ready
	if over := m.held() - s.size*int64(e.sessions()); e.overhead < 0 || over < e.overhead {
		e.overhead = max(0, over)
	}
	delete(e.failed, m.Name)
	e.mu.Unlock()
	e.env.log().Info("ready", "model", m.Name, "version", m.Version().Version, "alias", m.Alias())
	m.Follow(ctx, e.cfg.FollowInterval, e.cfg.Drain)
	return nil
}

// Load serves the model name at version (a version or an alias; "" the
// latest). A model loaded already switches to that version live, as an
// alias move does. A load is refused (ErrNoRoom, with the numbers) when
// the models loaded leave no room for it and none may be evicted.
func (e *Engine) Load(ctx context.Context, name, version string) error {
	if err := model.CheckName(model.ModelName, name); err != nil {
		return err
	}
	e.ops.Lock()
	defer e.ops.Unlock()
	e.mu.Lock()
	s, loaded := e.models[name]
	started := e.started
	e.mu.Unlock()
	if !started {
		return errors.New("the engine has not started")
	}
	if loaded {
		return s.m.Retarget(ctx, version, e.cfg.Drain)
	}
	v, err := e.reg.Get(name, version)
	if err != nil {
		return err
	}
	if err := e.makeRoom(ctx, name, v); err != nil {
		return err
	}
	ref := name
	if version != "" {
		ref += ":" + version
	}
	m, err := Resolve(e.reg, ref)
	if err != nil {
		return err
	}
	s = &slot{m: m, state: Loading, size: m.pending.Size}
	e.mu.Lock()
	e.models[name] = s
	e.mu.Unlock()
	if err := e.start(ctx, s); err != nil {
		e.share()
		return err
	}
	return e.share()
}

// estimate is about the host memory loading v would take: a copy of its
// file per session on the CPU (one on GPUs), and the least that a load
// here has taken beyond its copies (sessions, arenas, the runtime).
func (e *Engine) estimate(v registry.Version) int64 {
	return max(0, e.overhead) + v.Size*int64(e.sessions())
}

// sessions is how many sessions hold a copy of a model in host memory.
func (e *Engine) sessions() int {
	if e.o.Device == CUDA {
		return 1
	}
	if e.o.Workers > 0 {
		return e.o.Workers
	}
	return runtime.GOMAXPROCS(0)
}

// makeRoom checks that v fits beside the models loaded, in number and in
// memory, unloading idle ones (least recently used first) when EvictIdle
// allows. Called with ops held.
func (e *Engine) makeRoom(ctx context.Context, name string, v registry.Version) error {
	for {
		e.mu.Lock()
		need := e.estimate(v)
		var held int64
		for _, s := range e.models {
			held += s.m.held()
		}
		count, budget := len(e.models), e.modelBudget
		e.mu.Unlock()
		var why string
		switch {
		case e.cfg.MaxLoaded > 0 && count >= e.cfg.MaxLoaded:
			why = fmt.Sprintf("%d models are loaded, the most --max-loaded-models allows", count)
		case held+need > budget:
			why = fmt.Sprintf("it needs about %s; the models loaded hold %s of the %s they may hold",
				bytesize.Format(need), bytesize.Format(held), bytesize.Format(budget))
		default:
			return nil
		}
		victim := e.idlest()
		if victim == "" {
			hint := "unload a model first"
			if e.cfg.EvictIdle > 0 {
				hint = fmt.Sprintf("no model has been idle for %s to make room; unload one", e.cfg.EvictIdle)
			}
			return fmt.Errorf("%w for %s: %s; %s", ErrNoRoom, v.Ref(), why, hint)
		}
		e.env.log().Info("unloading the least recently used idle model to make room", "model", victim, "for", v.Ref(), "why", why)
		if err := e.unload(ctx, victim, "evicted"); err != nil {
			return err
		}
	}
}

// idlest is the loaded model least recently used among those idle for
// EvictIdle with nothing running; "" when none may be evicted.
func (e *Engine) idlest() string {
	if e.cfg.EvictIdle <= 0 {
		return ""
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var name string
	var oldest time.Time
	for n, s := range e.models {
		v := s.m.served()
		if s.state != Ready || v == nil {
			continue
		}
		used, idle := v.Queue.idleSince()
		if !idle || time.Since(used) < e.cfg.EvictIdle {
			continue
		}
		if name == "" || used.Before(oldest) {
			name, oldest = n, used
		}
	}
	return name
}

// Unload stops serving name: the front stops sending it requests, those
// it admitted finish (up to the drain time), and it is unloaded.
func (e *Engine) Unload(ctx context.Context, name string) error {
	e.ops.Lock()
	defer e.ops.Unlock()
	if err := e.unload(ctx, name, "unloaded"); err != nil {
		return err
	}
	return e.share()
}

// unload is Unload with ops held; why is logged.
func (e *Engine) unload(ctx context.Context, name, why string) error {
	e.mu.Lock()
	s, ok := e.models[name]
	if ok {
		s.state = Unloading
	}
	e.mu.Unlock()
	if !ok {
		return fmt.Errorf("model %s: %w: it is not loaded", name, registry.ErrNotFound)
	}
	// No switch may point the front at the model again once it is gone.
	s.m.stopFollow()
	version := s.m.Version().Version
	dctx, cancel := context.WithTimeout(ctx, e.cfg.Drain)
	e.front.Drop(dctx, name)
	cancel()
	err := s.m.Unload(ctx, e.cfg.Drain)
	e.mu.Lock()
	delete(e.models, name)
	e.mu.Unlock()
	e.env.log().Info(why, "model", name, "version", version)
	return err
}

// share splits the requests' memory budget among the models loaded.
func (e *Engine) share() error {
	e.mu.Lock()
	var models []*Model
	for _, s := range e.models {
		if s.state == Ready {
			models = append(models, s.m)
		}
	}
	e.mu.Unlock()
	if len(models) == 0 {
		return nil
	}
	return ShareMemory(models, e.o.Admission, e.env.log())
}

// Entry is one model of the repository index.
type Entry struct {
	Name, Version string
	State         State
	Reason        string
}

// Index lists the registry's models and where each stands here, sorted
// by name.
func (e *Engine) Index() ([]Entry, error) {
	versions, err := e.reg.List()
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []Entry
	seen := map[string]bool{}
	for n, s := range e.models {
		seen[n] = true
		out = append(out, Entry{Name: n, Version: s.m.Version().Version, State: s.state})
	}
	for _, v := range versions {
		if seen[v.Name] {
			continue
		}
		seen[v.Name] = true
		reason := "not loaded"
		if r, ok := e.failed[v.Name]; ok {
			reason = "its last load failed: " + r
		}
		out = append(out, Entry{Name: v.Name, State: Unavailable, Reason: reason})
	}
	slices.SortFunc(out, func(a, b Entry) int { return cmp.Compare(a.Name, b.Name) })
	return out, nil
}

// Close unloads every model (up to ctx), the front having stopped.
func (e *Engine) Close(ctx context.Context) error {
	e.ops.Lock()
	defer e.ops.Unlock()
	e.mu.Lock()
	slots := e.models
	e.models = map[string]*slot{}
	e.mu.Unlock()
	var errs []error
	for _, s := range slots {
		errs = append(errs, s.m.Close(ctx))
	}
	return errors.Join(errs...)
}
