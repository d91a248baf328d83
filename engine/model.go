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

	reg *registry.Registry
	o   Options
	env Env
	use func(*Version)
	m   processMetrics

	mu sync.Mutex
	// alias is what the model follows; empty when named by its version.
	alias   string
	pending registry.Version // resolved, not loaded yet
	current *Version
	lease   func() error
	// refused is the last version a switch to failed: not tried again
	// until the alias names another.
	refused string
	// stopFollowing ends Follow's loop; following waits for it.
	stopFollowing func()
	following     sync.WaitGroup
	// switching runs one switch (alias moved, retarget) at a time.
	switching sync.Mutex
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
		m.alias = version
	}
	return m, nil
}

// Alias is the alias the model follows, "" when it was named by version.
func (m *Model) Alias() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.alias
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
// to drain to finish what it admitted. A model named by version has
// nothing to follow until it is retargeted to an alias.
func (m *Model) Follow(ctx context.Context, interval, drain time.Duration) {
	if interval <= 0 {
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
				m.env.log().Error("cannot switch versions; the old one goes on serving", "model", m.Name, "alias", m.Alias(), "error", err.Error())
			}
		}
	}()
}

// Check switches to the version the alias names now, if it has moved.
func (m *Model) Check(ctx context.Context, drain time.Duration) error {
	m.switching.Lock()
	defer m.switching.Unlock()
	alias := m.Alias()
	if alias == "" {
		return nil
	}
	v, err := m.reg.Get(m.Name, alias)
	if err != nil {
		return fmt.Errorf("reading alias %s:%s: %w", m.Name, alias, err)
	}
	m.mu.Lock()
	old := m.current
	same := old == nil || v.Version == old.VersionName() || v.Version == m.refused
	m.mu.Unlock()
	if same {
		return nil
	}
	if err := m.switchTo(ctx, old, v, drain); err != nil {
		m.mu.Lock()
		m.refused = v.Version
		m.mu.Unlock()
		return fmt.Errorf("%s:%s moved to version %s: %w", m.Name, alias, v.Version, err)
	}
	return nil
}

// Retarget serves version (a version or an alias; "" the latest) from
// now on: a version other than the one served is loaded beside it and
// switched to as an alias move is, and a model named by an alias follows
// it from then on.
func (m *Model) Retarget(ctx context.Context, version string, drain time.Duration) error {
	m.switching.Lock()
	defer m.switching.Unlock()
	v, err := m.reg.Get(m.Name, version)
	if err != nil {
		return err
	}
	alias := ""
	if version != "" && version != v.Version {
		alias = version
	}
	m.mu.Lock()
	old := m.current
	m.mu.Unlock()
	if old == nil {
		return fmt.Errorf("model %s is not loaded", m.Name)
	}
	if v.Version != old.VersionName() {
		if err := m.switchTo(ctx, old, v, drain); err != nil {
			return fmt.Errorf("switching %s from version %s to %s: %w", m.Name, old.VersionName(), v.Version, err)
		}
	}
	m.mu.Lock()
	m.alias, m.refused = alias, ""
	m.mu.Unlock()
	return nil
}

// switchTo loads v beside old, points the front at it, then drains and
// unloads old.
func (m *Model) switchTo(ctx context.Context, old *Version, v registry.Version, drain time.Duration) (err error) {
	start := time.Now()
	defer func() {
		if err != nil {
			m.m.switches.WithLabelValues(m.Name, "failed").Inc()
			return
		}
		m.m.switches.WithLabelValues(m.Name, "ok").Inc()
		m.m.switchSeconds.WithLabelValues(m.Name).Observe(time.Since(start).Seconds())
	}()
	log := m.env.log().With("model", m.Name, "alias", m.Alias())
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

// Close unloads the version served at once (its queue answers what
// waits with ErrClosed; running calls finish, up to ctx) and lets the
// registry delete it again. A front that still sends requests should
// Unload instead.
func (m *Model) Close(ctx context.Context) error {
	return m.unload(ctx, 0)
}

// Unload stops following the alias, lets the requests the version
// admitted finish (up to drain), then unloads it and lets the registry
// delete it again. The front has stopped sending it requests.
func (m *Model) Unload(ctx context.Context, drain time.Duration) error {
	return m.unload(ctx, drain)
}

// stopFollow stops following the alias; a switch under way ends first.
func (m *Model) stopFollow() {
	m.mu.Lock()
	stop := m.stopFollowing
	m.mu.Unlock()
	if stop != nil {
		stop()
		m.following.Wait()
	}
}

func (m *Model) unload(ctx context.Context, drain time.Duration) error {
	m.stopFollow()
	m.switching.Lock()
	defer m.switching.Unlock()
	m.mu.Lock()
	cur, lease := m.current, m.lease
	m.current, m.lease = nil, nil
	m.mu.Unlock()
	var errs []error
	if cur != nil {
		if drain > 0 {
			dctx, cancel := context.WithTimeout(ctx, drain)
			if err := cur.Drain(dctx); err != nil {
				m.env.log().Warn("the version did not finish in time; unloading it", "model", m.Name, "version", cur.VersionName(), "error", err.Error())
			}
			cancel()
		}
		errs = append(errs, cur.Close(ctx))
	}
	if lease != nil {
		errs = append(errs, lease())
	}
	return errors.Join(errs...)
}

// served is the version served, nil before Start and after Close.
func (m *Model) served() *Version {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.current
}

// held is the host memory the version served took at load, 0 when none
// is loaded.
func (m *Model) held() int64 {
	if v := m.served(); v != nil {
		return v.w.held
	}
	return 0
}
