package local

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/modelserve/modelserve/model"
)

// JobResult is how a job run ended and where its logs are.
type JobResult struct {
	Dir        string
	Containers []ContainerStatus
}

// RunJob runs a job spec once: every container to completion, none
// restarted. It fails when any container exits non-zero; the logs stay in
// the run's directory. Ending ctx stops the containers.
func RunJob(ctx context.Context, o Options) (*JobResult, error) {
	o.defaults()
	if err := model.CheckName(model.JobName, o.Name); err != nil {
		return nil, err
	}
	o.Instances = 1
	for _, ep := range o.Spec.Endpoints {
		o.Log.Warn("a job serves no traffic; its endpoint is ignored", "endpoint", ep.Name)
	}
	jobSpec := *o.Spec // the caller's spec stays as it was
	jobSpec.Endpoints = nil
	o.Spec = &jobSpec
	dir := JobDir(o.StateDir, fmt.Sprintf("%s-%s", o.Name, time.Now().UTC().Format("20060102T150405.000")))
	r, unlock, err := prepare(ctx, o, dir, false)
	if err != nil {
		return nil, err
	}
	defer unlock()
	defer r.cleanup()
	go r.writeStatusLoop(ctx)
	r.setState("running")
	var wg sync.WaitGroup
	errs := make([]error, len(r.instances[0].runners))
	for i, rn := range r.instances[0].runners {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := rn.run(ctx); err != nil {
				errs[i] = fmt.Errorf("container %s: %s (log: %s)", rn.p.container, describeExit(err), rn.logPath)
			}
		}()
	}
	wg.Wait()
	res := &JobResult{Dir: dir}
	for _, rn := range r.instances[0].runners {
		res.Containers = append(res.Containers, rn.status())
	}
	if ctx.Err() != nil {
		r.setState("stopped")
		return res, fmt.Errorf("job %s interrupted; its containers were stopped", o.Name)
	}
	if err := errors.Join(errs...); err != nil {
		r.setState("failed")
		return res, fmt.Errorf("job %s failed:\n%w", o.Name, err)
	}
	r.setState("succeeded")
	return res, nil
}
