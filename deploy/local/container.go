package local

import (
	"context"
	"fmt"
	"maps"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/modelserve/modelserve/deploy/spec"
)

// Labels reads an image's labels, so a container whose image is a model
// image from modelserve build runs as a local modelserve process.
type Labels interface {
	Labels(ctx context.Context, image string) (map[string]string, error)
}

// Image labels written by modelserve build.
const (
	labelModelName    = "dev.modelserve.model.name"
	labelModelVersion = "dev.modelserve.model.version"
	labelModelSHA     = "dev.modelserve.model.sha256"
)

// A process is one container of one instance as this machine runs it.
type process struct {
	instance  int
	container string
	argv      []string
	env       []string
	podman    bool   // argv is a podman run; false: a local modelserve process
	port      int    // a local modelserve process's port on this machine
	probe     string // readiness URL on this machine, "" for none
	logLevel  string
	// mounts maps the spec's mount paths to this machine's directories,
	// for the size watch on memory volumes.
	memory []memoryMount
}

type memoryMount struct {
	volume, dir string
	size        int64
}

func (p *process) name() string { return fmt.Sprintf("%d/%s", p.instance, p.container) }

// isModelserve decides how a container runs: its command is modelserve, or
// it names a model in its environment, or its image is a model image.
func isModelserve(ctx context.Context, c spec.Container, labels Labels) (model string, ok bool) {
	if m := flagValue(c.Args, "model"); m != "" {
		model = m
	} else if m := c.Env[spec.ModelEnv]; m != "" {
		model = m
	}
	if len(c.Command) > 0 {
		return model, path.Base(c.Command[0]) == "modelserve"
	}
	if model != "" {
		return model, true
	}
	if labels == nil {
		return "", false
	}
	// An image we cannot read is left to podman, which says why.
	l, err := labels.Labels(ctx, c.Image)
	if err != nil || l[labelModelName] == "" {
		return "", false
	}
	return l[labelModelName] + ":" + l[labelModelVersion], true
}

// flagValue finds --name VALUE or --name=VALUE in args.
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, "--"+name+"="); ok {
			return v
		}
		if a == "--"+name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

// containerPort is the port a modelserve container listens on inside its
// instance: --port, else MODELSERVE_PORT, else the server's default.
func containerPort(c spec.Container) (int, error) {
	s := flagValue(c.Args, "port")
	if s == "" {
		s = c.Env["MODELSERVE_PORT"]
	}
	if s == "" {
		return spec.ModelPort, nil
	}
	p, err := strconv.Atoi(s)
	if err != nil || p < 1 || p > 65535 {
		return 0, fmt.Errorf("container %s: port %q is not a port", c.Name, s)
	}
	return p, nil
}

// translator rewrites the container's paths (mount points) into this
// machine's directories, for containers that run as local processes.
type translator map[string]string

func (t translator) path(s string) (string, error) {
	// --flag=/mount/path
	if k, v, ok := strings.Cut(s, "="); ok && strings.HasPrefix(v, "/") {
		p, err := t.path(v)
		return k + "=" + p, err
	}
	mounts := slices.Collect(maps.Keys(t))
	// Longest first: /data/models wins over /data.
	slices.SortFunc(mounts, func(a, b string) int { return len(b) - len(a) })
	for _, m := range mounts {
		if s == m {
			return t[m], nil
		}
		if rest, ok := strings.CutPrefix(s, strings.TrimSuffix(m, "/")+"/"); ok {
			p := filepath.Join(t[m], rest)
			if !within(t[m], p) {
				return "", fmt.Errorf("%s climbs out of the volume mounted at %s", s, m)
			}
			return p, nil
		}
	}
	return s, nil
}

// within reports whether path (cleaned) lies in dir or is dir.
func within(dir, path string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// modelserveArgv is the argument list of a local modelserve process: the
// container's command and args, with serve's address moved to this
// machine's port for the instance.
func modelserveArgv(self, registry string, c spec.Container, model string, port int, t translator) ([]string, error) {
	args := slices.Clone(c.Args)
	if len(c.Command) > 1 {
		args = append(slices.Clone(c.Command[1:]), args...)
	}
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		args = append([]string{"serve"}, args...) // the image's CMD
	}
	for i := range args {
		var err error
		if args[i], err = t.path(args[i]); err != nil {
			return nil, fmt.Errorf("container %s: %w", c.Name, err)
		}
	}
	argv := append([]string{self}, args...)
	if args[0] == "serve" {
		if flagValue(args, "model") == "" && model != "" {
			argv = append(argv, "--model", model)
		}
		// Later flags win: the instance's own port, on loopback.
		argv = append(argv, "--host", "127.0.0.1", "--port", strconv.Itoa(port))
	}
	return append(argv, "--registry", registry), nil
}
