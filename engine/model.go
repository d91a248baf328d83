package engine

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"

	"github.com/modelserve/modelserve/registry"
)

// Model is one model a front serves: the version it runs now and, when it
// was named by an alias (iris:prod), the alias it follows. When the alias
// moves, the new version is loaded and warmed beside the old, new
// requests switch to it at once (use), the old one finishes what it
// admitted and is unloaded. A new version that fails to load, or whose
// signature differs from the one served, is refused: the old one goes on.
type Model struct {
	Name string
	// Alias is what the model follows; empty when named by its version.
	Alias string

	reg *registry.Registry
	o   Options
	env Env
	use func(*Version)
	m   processMetrics

	mu      sync.Mutex
	pending registry.Version // resolved, not loaded yet
	current *Version
	lease   func() error
	// refused is the last version a switch to failed: not tried again
	// until the alias names another.
	refused string
	// stopFollowing ends Follow's loop; following waits for it.
	stopFollowing func()
	following     sync.WaitGroup
}

// Resolve finds ref (NAME, NAME:VERSION or NAME:ALIAS) in reg and holds
// the version it names (a served version cannot be deleted); Start loads
// it.
func Resolve(reg *registry.Registry, ref string) (*Model, error) {
	name, version, err := registry.ParseRef(ref)
	if err != nil {
		return nil, err
	}
	v, err := reg.Get(name, version)
	if err != nil {
		return nil, err
	}
	lease, err := reg.Acquire(v)
	if err != nil {
		return nil, err
	}
	m := &Model{Name: name, reg: reg, pending: v, lease: lease}
	if version != "" && version != v.Version {
		m.Alias = version
	}
	return m, nil
}

// Version is the registry version served (or about to be).
func (m *Model) Version() registry.Version {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.current != nil {
		return m.current.Registry()
	}
	return m.pending
}

// Start loads the resolved version with o and hands it to use, which the
// front points its requests at; use is called again at every switch.
func (m *Model) Start(ctx context.Context, o Options, env Env, use func(*Version)) error {
	m.o, m.env, m.use = o, env, use
	var err error
	if m.m, err = newProcessMetrics(env.metrics()); err != nil {
		return err
	}
	ver, err := Load(ctx, m.reg, m.pending, o, m.envFor(m.pending))
	if err != nil {
		return err
	}
	m.mu.Lock()
	m.current = ver
	m.mu.Unlock()
	use(ver)
	return nil
}

func (m *Model) envFor(v registry.Version) Env {
	e := m.env
	e.Log = e.log().With("model", v.Name, "version", v.Version)
	return e
}

// Follow starts checking the alias every interval, until ctx ends or the
// model is closed, switching when it has moved; the old version gets up
// to drain to finish what it admitted. A model not named by an alias has
// nothing to follow.
func (m *Model) Follow(ctx context.Context, interval, drain time.Duration) {
	if m.Alias == "" {
		return
	}
	ctx, cancel := context.WithCancel(ctx)
	m.mu.Lock()
	m.stopFollowing = cancel
	m.mu.Unlock()
	m.following.Add(1)
	go func() {
		defer m.following.Done()
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
			if err := m.Check(ctx, drain); err != nil {
				m.env.log().Error("cannot switch versions; the old one goes on serving", "model", m.Name, "alias", m.Alias, "error", err.Error())
			}
		}
	}()
}

// Check switches to the version the alias names now, if it has moved.
func (m *Model) Check(ctx context.Context, drain time.Duration) error {
	v, err := m.reg.Get(m.Name, m.Alias)
	if err != nil {
		return fmt.Errorf("reading alias %s:%s: %w", m.Name, m.Alias, err)
	}
	m.mu.Lock()
	old := m.current
	same := old == nil || v.Version == old.VersionName() || v.Version == m.refused
	m.mu.Unlock()
	if same {
		return nil
	}
	start := time.Now()
	err = m.switchTo(ctx, old, v, drain)
	if err != nil {
		m.mu.Lock()
		m.refused = v.Version
		m.mu.Unlock()
		m.m.switches.WithLabelValues(m.Name, "failed").Inc()
		return fmt.Errorf("%s:%s moved to version %s: %w", m.Name, m.Alias, v.Version, err)
	}
	m.m.switches.WithLabelValues(m.Name, "ok").Inc()
	m.m.switchSeconds.WithLabelValues(m.Name).Observe(time.Since(start).Seconds())
	return nil
}

// switchTo loads v beside old, points the front at it, then drains and
// unloads old.
func (m *Model) switchTo(ctx context.Context, old *Version, v registry.Version, drain time.Duration) error {
	log := m.env.log().With("model", m.Name, "alias", m.Alias)
	if !reflect.DeepEqual(v.Signature, old.Registry().Signature) {
		return errors.New("its signature (inputs, outputs or functions) differs from the version served; a new signature needs a restart")
	}
	lease, err := m.reg.Acquire(v)
	if err != nil {
		return err
	}
	log.Info("loading the version the alias names now", "from", old.VersionName(), "to", v.Version)
	ver, err := load(ctx, m.reg, v, m.o, m.envFor(v), old)
	if err != nil {
		lease()
		return err
	}
	m.mu.Lock()
	m.current = ver
	oldLease := m.lease
	m.lease = lease
	m.refused = ""
	m.mu.Unlock()
	m.use(ver)
	log.Info("switched", "from", old.VersionName(), "to", v.Version)
	// The old version finishes what it admitted, then goes.
	dctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	if err := old.Drain(dctx); err != nil {
		log.Warn("the old version did not finish in time; unloading it", "version", old.VersionName(), "error", err.Error())
	}
	if err := old.Close(dctx); err != nil {
		log.Warn("unloading the old version", "version", old.VersionName(), "error", err.Error())
	}
	oldLease()
	log.Info("unloaded", "version", old.VersionName())
	return nil
}

// Close drains the version served (up to ctx), unloads it and lets the
// registry delete it again.
func (m *Model) Close(ctx context.Context) error {
	m.mu.Lock()
	stop := m.stopFollowing
	m.mu.Unlock()
	if stop != nil {
		stop()
		m.following.Wait() // a switch under way ends first
	}
	m.mu.Lock()
	cur, lease := m.current, m.lease
	m.current, m.lease = nil, nil
	m.mu.Unlock()
	var errs []error
	if cur != nil {
		errs = append(errs, cur.Close(ctx))
	}
	if lease != nil {
		errs = append(errs, lease())
	}
	return errors.Join(errs...)
}
