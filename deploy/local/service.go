package local

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/modelserve/modelserve/deploy/spec"
	"github.com/modelserve/modelserve/model"
)

// Options say how to run a spec here.
type Options struct {
	Name      string
	Spec      *spec.Spec
	SpecFile  string
	Instances int // services: how many; jobs run one
	StateDir  string

	Self     string   // the modelserve binary that runs modelserve containers
	Registry string   // the registry they serve from
	Env      []string // the environment local processes start from (os.Environ())

	Host    string         // listeners' address (default 127.0.0.1)
	Publish map[string]int // endpoint name → port on this machine (0: any free one); default: the spec's port

	Stages  map[string]string            // stage name → directory
	Secrets map[string]map[string]string // secret object → key → value

	Podman        []string // how to call podman, e.g. [podman --root R]; default [podman]
	PodmanRunArgs []string // extra podman run flags (e.g. --ulimit)
	Labels        Labels   // reads image labels; nil: decide without them

	DrainTimeout time.Duration // how long SIGTERM waits for requests in flight
	StopTimeout  time.Duration // how long a container has between SIGTERM and SIGKILL
	Log          *slog.Logger
}

func (o *Options) defaults() {
	if o.Instances < 1 {
		o.Instances = 1
	}
	if o.Host == "" {
		o.Host = "127.0.0.1"
	}
	if len(o.Podman) == 0 {
		o.Podman = []string{"podman"}
	}
	if o.DrainTimeout <= 0 {
		o.DrainTimeout = 30 * time.Second
	}
	if o.StopTimeout <= 0 {
		o.StopTimeout = 10 * time.Second
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
}

// instance is one copy of every container of the spec.
type instance struct {
	index   int
	ports   map[int]int // port inside the instance → port on this machine
	pod     string      // podman pod, "" when no container runs in podman
	runners []*runner
	mounts  []string // tmpfs to unmount at the end
}

// run is one service or job running here.
type run struct {
	o         Options
	dir       string
	instances []*instance
	proxies   []*endpointProxy
	status    Status
	statusMu  sync.Mutex
	dirty     chan struct{}
}

// Up runs a service in the foreground until ctx ends, then drains: new
// requests get 503, requests in flight finish, and the containers stop.
func Up(ctx context.Context, o Options) error {
	o.defaults()
	if err := model.CheckName(model.ServiceName, o.Name); err != nil {
		return err
	}
	r, unlock, err := prepare(ctx, o, ServiceDir(o.StateDir, o.Name), true)
	if err != nil {
		return err
	}
	defer unlock()
	for _, ep := range o.Spec.Endpoints {
		port := ep.Port
		if p, ok := o.Publish[ep.Name]; ok {
			port = p
		}
		px, err := newEndpointProxy(ep, net.JoinHostPort(o.Host, strconv.Itoa(port)), r, o.Log)
		if err != nil {
			r.closeProxies()
			r.cleanup()
			return fmt.Errorf("service %s: %w", o.Name, err)
		}
		r.proxies = append(r.proxies, px)
		go px.serve()
		o.Log.Info("endpoint", "name", ep.Name, "protocol", ep.Protocol, "address", px.addr(), "public", ep.Public)
	}
	runCtx, stop := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	r.start(runCtx, &wg)
	r.setState("running")

	<-ctx.Done()
	o.Log.Info("draining", "timeout", o.DrainTimeout.String())
	r.setState("draining")
	drainCtx, cancel := context.WithTimeout(context.Background(), o.DrainTimeout)
	var dwg sync.WaitGroup
	for _, px := range r.proxies {
		dwg.Add(1)
		go func() { defer dwg.Done(); px.drain(drainCtx) }()
	}
	dwg.Wait()
	cancel()
	stop()
	wg.Wait()
	r.closeProxies()
	r.cleanup()
	r.setState("stopped")
	r.flushStatus()
	o.Log.Info("stopped")
	return nil
}

// prepare takes the lock and plans every instance: ports, volumes,
// secrets and the command line of every container.
func prepare(ctx context.Context, o Options, dir string, restart bool) (*run, func(), error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("%s: %w", o.Name, err)
	}
	lk, err := lock(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w (see modelserve service status %s)", o.Name, err, o.Name)
	}
	unlock := func() { lk.Close() }
	// Each run starts with fresh logs and volumes; the last run's logs
	// stay beside them until the next.
	os.RemoveAll(filepath.Join(dir, "logs.previous"))
	os.Rename(filepath.Join(dir, "logs"), filepath.Join(dir, "logs.previous"))
	os.RemoveAll(filepath.Join(dir, "instances"))
	r := &run{o: o, dir: dir, dirty: make(chan struct{}, 1)}
	r.status = Status{Service: o.Name, Spec: o.SpecFile, PID: os.Getpid(), State: "starting", Started: time.Now().UTC()}
	for i := range o.Instances {
		in, err := r.plan(ctx, i, restart)
		if err != nil {
			r.cleanup()
			unlock()
			return nil, nil, err
		}
		r.instances = append(r.instances, in)
	}
	return r, unlock, nil
}

func (r *run) start(ctx context.Context, wg *sync.WaitGroup) {
	go r.writeStatusLoop(ctx)
	for _, in := range r.instances {
		for _, rn := range in.runners {
			wg.Add(1)
			go func() { defer wg.Done(); rn.run(ctx) }()
		}
	}
}

func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// plan lays out instance i.
func (r *run) plan(ctx context.Context, i int, restart bool) (*instance, error) {
	o, s := r.o, r.o.Spec
	in := &instance{index: i, ports: map[int]int{}}
	idir := filepath.Join(r.dir, "instances", strconv.Itoa(i))
	logDir := filepath.Join(r.dir, "logs", strconv.Itoa(i))
	if err := os.MkdirAll(logDir, 0o755); err != nil {
		return nil, err
	}
	level := s.LogLevel()
	if level == "" {
		level = spec.LogInfo // here the log file is the only record
	}

	// Volumes: one directory per instance for local and memory volumes.
	dirs := map[string]string{}
	memory := map[string]memoryMount{}
	for _, v := range s.Volumes {
		switch v.Kind() {
		case spec.SourceStage:
			d, err := stageDir(o.Stages, v)
			if err != nil {
				return nil, err
			}
			dirs[v.Name] = d
		default:
			d := filepath.Join(idir, "volumes", v.Name)
			if err := os.MkdirAll(d, 0o777); err != nil {
				return nil, err
			}
			os.Chmod(d, 0o777) // containers may run as another user
			dirs[v.Name] = d
			if v.Kind() == spec.SourceMemory {
				if memoryVolume(d, v.Size.Value()) {
					in.mounts = append(in.mounts, d)
				} else {
					memory[v.Name] = memoryMount{volume: v.Name, dir: d, size: v.Size.Value()}
				}
			}
		}
	}

	// Which containers run here as modelserve, which in podman.
	type planned struct {
		c      spec.Container
		model  string
		native bool
		port   int
	}
	var cs []planned
	needPod := false
	for _, c := range s.Containers {
		model, native := isModelserve(ctx, c, o.Labels)
		p := planned{c: c, model: model, native: native}
		if native {
			var err error
			if p.port, err = containerPort(c); err != nil {
				return nil, err
			}
			if _, dup := in.ports[p.port]; dup {
				return nil, fmt.Errorf("containers of one instance both listen on port %d", p.port)
			}
			if in.ports[p.port], err = freePort(); err != nil {
				return nil, err
			}
		} else {
			needPod = true
		}
		cs = append(cs, p)
	}
	if needPod {
		if _, err := exec.LookPath(o.Podman[0]); err != nil {
			var names []string
			for _, p := range cs {
				if !p.native {
					names = append(names, fmt.Sprintf("%s (%s)", p.c.Name, p.c.Image))
				}
			}
			return nil, fmt.Errorf("%s not modelserve images: running them needs podman, which is not installed (%w)", strings.Join(names, ", "), err)
		}
		in.pod = fmt.Sprintf("modelserve-%s-%d", r.o.Name, i)
		var publish []string
		ports := []int{}
		for _, ep := range s.Endpoints {
			ports = append(ports, ep.Port)
		}
		for _, p := range cs {
			if !p.native && p.c.ReadinessProbe != nil {
				ports = append(ports, p.c.ReadinessProbe.Port)
			}
		}
		for _, port := range ports {
			if _, ok := in.ports[port]; ok {
				continue
			}
			hp, err := freePort()
			if err != nil {
				return nil, err
			}
			in.ports[port] = hp
			publish = append(publish, "-p", fmt.Sprintf("127.0.0.1:%d:%d", hp, port))
		}
		podman(ctx, o.Podman, "pod", "rm", "-f", in.pod)
		args := append([]string{"pod", "create", "--name", in.pod}, publish...)
		if out, err := podman(ctx, o.Podman, args...); err != nil {
			return nil, fmt.Errorf("creating pod %s: %w: %s", in.pod, err, out)
		}
	}
	for _, ep := range s.Endpoints {
		if _, ok := in.ports[ep.Port]; !ok {
			return nil, fmt.Errorf("endpoint %s: no container listens on port %d (modelserve containers listen on --port or MODELSERVE_PORT, default %d)", ep.Name, ep.Port, spec.ModelPort)
		}
	}

	for _, p := range cs {
		c := p.c
		pr := &process{instance: i, container: c.Name, podman: !p.native, logLevel: level}
		if c.ReadinessProbe != nil {
			hp, ok := in.ports[c.ReadinessProbe.Port]
			if !ok {
				return nil, fmt.Errorf("container %s: its readiness probe's port %d is not one it listens on", c.Name, c.ReadinessProbe.Port)
			}
			pr.probe = probeURL(c, hp)
		}
		mounts := translator{}
		for _, m := range c.VolumeMounts {
			mounts[m.MountPath] = dirs[m.Name]
			if mm, ok := memory[m.Name]; ok {
				pr.memory = append(pr.memory, mm)
			}
		}
		env := map[string]string{}
		for k, v := range c.Env {
			env[k] = v
		}
		for j, sc := range c.Secrets {
			if sc.EnvVarName != "" {
				v, err := secretValue(o.Secrets, sc)
				if err != nil {
					return nil, fmt.Errorf("container %s: %w", c.Name, err)
				}
				env[sc.EnvVarName] = v
				continue
			}
			keys, err := secretKeys(o.Secrets, sc)
			if err != nil {
				return nil, fmt.Errorf("container %s: %w", c.Name, err)
			}
			d := filepath.Join(idir, "secrets", fmt.Sprintf("%s-%d", c.Name, j))
			if err := writeSecretDir(d, keys); err != nil {
				return nil, fmt.Errorf("container %s: secret %s: %w", c.Name, sc.SnowflakeSecret, err)
			}
			mounts[sc.DirectoryPath] = d
		}
		if p.native {
			var err error
			for k, v := range env {
				if env[k], err = mounts.path(v); err != nil {
					return nil, fmt.Errorf("container %s: %s: %w", c.Name, k, err)
				}
			}
			pr.port = in.ports[p.port]
			if pr.argv, err = modelserveArgv(o.Self, o.Registry, c, p.model, pr.port, mounts); err != nil {
				return nil, err
			}
			pr.env = nativeEnv(o.Env, env)
		} else {
			pr.argv = podmanRun(o, in.pod, fmt.Sprintf("%s-%s", in.pod, c.Name), c, env, mounts)
			pr.env = o.Env
		}
		in.runners = append(in.runners, &runner{
			p: pr, logPath: filepath.Join(logDir, c.Name+".log"), restart: restart,
			stopTimeout: o.StopTimeout, log: o.Log, changed: r.changed,
		})
	}
	return in, nil
}

// nativeEnv is the environment of a local modelserve process: ours without
// settings meant for this process, then the container's.
func nativeEnv(base []string, env map[string]string) []string {
	var out []string
	for _, kv := range base {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "MODELSERVE_") && k != "MODELSERVE_ORT_LIB" {
			continue
		}
		out = append(out, kv)
	}
	for _, k := range sortedKeys(env) {
		out = append(out, k+"="+env[k])
	}
	return out
}

func podmanRun(o Options, pod, name string, c spec.Container, env map[string]string, mounts translator) []string {
	argv := slices.Clone(o.Podman)
	argv = append(argv, "run", "--rm", "--replace", "--pod", pod, "--name", name)
	argv = append(argv, o.PodmanRunArgs...)
	if len(c.Command) > 0 {
		ep, _ := json.Marshal(c.Command)
		argv = append(argv, "--entrypoint", string(ep))
	}
	for _, k := range sortedKeys(env) {
		argv = append(argv, "--env", k+"="+env[k])
	}
	for _, m := range sortedKeys(mounts) {
		argv = append(argv, "--volume", mounts[m]+":"+m)
	}
	argv = append(argv, c.Image)
	return append(argv, c.Args...)
}

func podman(ctx context.Context, prefix []string, args ...string) (string, error) {
	argv := append(slices.Clone(prefix), args...)
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// ready is backends.ready: instances whose every container runs and
// passes its probe.
func (r *run) ready(port int) []string {
	var out []string
	for _, in := range r.instances {
		if in.ready() {
			out = append(out, net.JoinHostPort("127.0.0.1", strconv.Itoa(in.ports[port])))
		}
	}
	return out
}

func (in *instance) ready() bool {
	for _, rn := range in.runners {
		if !rn.isReady() {
			return false
		}
	}
	return true
}

// failed is backends.failed: the instance is probed again at once.
func (r *run) failed(port int, addr string) {
	for _, in := range r.instances {
		if net.JoinHostPort("127.0.0.1", strconv.Itoa(in.ports[port])) == addr {
			for _, rn := range in.runners {
				rn.pokeProbe()
			}
		}
	}
}

func (r *run) closeProxies() {
	for _, px := range r.proxies {
		px.close()
	}
}

func (r *run) cleanup() {
	for _, in := range r.instances {
		for _, m := range in.mounts {
			unmount(m)
		}
		if in.pod != "" {
			podman(context.Background(), r.o.Podman, "pod", "rm", "-f", in.pod)
		}
	}
}

func (r *run) changed() {
	select {
	case r.dirty <- struct{}{}:
	default:
	}
}

func (r *run) setState(s string) {
	r.statusMu.Lock()
	r.status.State = s
	r.statusMu.Unlock()
	r.flushStatus()
}

// writeStatusLoop writes the status when something changes, and every
// second for the counters.
func (r *run) writeStatusLoop(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-r.dirty:
		case <-t.C:
		}
		r.flushStatus()
	}
}

func (r *run) flushStatus() {
	r.statusMu.Lock()
	defer r.statusMu.Unlock()
	s := &r.status
	s.Updated = time.Now().UTC()
	s.Endpoints = s.Endpoints[:0]
	for _, px := range r.proxies {
		s.Endpoints = append(s.Endpoints, EndpointStatus{Name: px.ep.Name, Protocol: px.ep.Protocol, Public: px.ep.Public,
			Address: px.addr(), Served: px.served.Load()})
	}
	s.Instances = s.Instances[:0]
	for _, in := range r.instances {
		is := InstanceStatus{Index: in.index, Ready: in.ready()}
		for _, rn := range in.runners {
			is.Containers = append(is.Containers, rn.status())
		}
		s.Instances = append(s.Instances, is)
	}
	if err := writeStatus(r.dir, s); err != nil {
		r.o.Log.Warn("writing status", "err", err)
	}
}

// probeURL is where a container's readiness is asked, on its host port:
// over HTTPS when it serves TLS (its endpoint is then HTTPS too, and the
// proxy passes TLS through to it).
func probeURL(c spec.Container, hostPort int) string {
	scheme := "http"
	if c.ServesTLS() {
		scheme = "https"
	}
	return fmt.Sprintf("%s://127.0.0.1:%d%s", scheme, hostPort, c.ReadinessProbe.Path)
}
