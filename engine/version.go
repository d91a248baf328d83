package engine

import (
	"context"

	"github.com/modelserve/modelserve/registry"
)

// Version is a registry version loaded and admitting: its workers and
// the admission queue in front of them.
type Version struct {
	*Queue
	w *Workers
}

// Load starts a version's workers and puts a queue in front of them, as
// o says: what serve and predict-batch run rows through.
func Load(ctx context.Context, reg *registry.Registry, v registry.Version, o Options, env Env) (*Version, error) {
	return load(ctx, reg, v, o, env, nil)
}

// load is Load; a version taking over from like starts its queue from
// like's learned cost.
func load(ctx context.Context, reg *registry.Registry, v registry.Version, o Options, env Env, like *Version) (*Version, error) {
	w, err := Start(ctx, reg, v, o, env)
	if err != nil {
		return nil, err
	}
	var q *Queue
	if like != nil {
		q, err = w.admitLike(o.Admission, like.Queue)
	} else {
		q, err = w.Admit(o.Admission, nil)
	}
	if err != nil {
		w.Close(ctx)
		return nil, err
	}
	return &Version{Queue: q, w: w}, nil
}

// Registry is the registry version loaded.
func (v *Version) Registry() registry.Version { return v.w.v }

// Workers are the version's workers.
func (v *Version) Workers() *Workers { return v.w }

// Close refuses new requests, answers what waits with ErrClosed, waits
// for the running calls (or ctx) and releases the workers.
func (v *Version) Close(ctx context.Context) error {
	v.Queue.Close()
	return v.w.Close(ctx)
}

// VersionName is the registry version loaded, for the server's metrics.
func (v *Version) VersionName() string { return v.w.v.Version }
