package main

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/modelserve/modelserve/internal/ocitest"
	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/onnxrt"
)

// podman runs podman with its own storage under the test's folder and the
// flags that work on these machines (../shared/reference/machine.md).
type podman struct {
	t    *testing.T
	args []string
}

func newPodman(t *testing.T) *podman {
	t.Helper()
	if _, err := exec.LookPath("podman"); err != nil {
		t.Fatalf("podman is needed (scripts/deps.sh test installs it): %v", err)
	}
	if os.Geteuid() != 0 {
		t.Fatal("podman runs containers here only as root (machine.md): run make test as root (CI does)")
	}
	// Not t.TempDir: podman refuses a run root path over 50 characters.
	dir, err := os.MkdirTemp("", "ms-podman-")
	if err != nil {
		t.Fatal(err)
	}
	p := &podman{t: t, args: []string{
		"--root", filepath.Join(dir, "root"), "--runroot", filepath.Join(dir, "run"),
		"--cgroup-manager=cgroupfs", "--events-backend=file", "--runtime=runc",
	}}
	t.Cleanup(func() {
		// Containers stopped and layers unmounted before the folder goes.
		p.run("system", "reset", "--force")
		os.RemoveAll(dir)
	})
	return p
}

// run returns podman's standard output; its errors carry its standard
// error (where it also complains of the systemd it lacks here).
func (p *podman) run(args ...string) (string, error) {
	cmd := exec.Command("podman", append(append([]string{}, p.args...), args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%w\n%s", err, stderr.String())
	}
	return stdout.String(), nil
}

func (p *podman) must(args ...string) string {
	p.t.Helper()
	out, err := p.run(args...)
	if err != nil {
		p.t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// builderImage imports an image that builds Go with cgo from this
// machine's own /usr, bind-mounted at build time: the merged-/usr links,
// root's account, and a PATH with Go in it, offline.
func (p *podman) builderImage(goroot string) string {
	p.t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, d := range []struct {
		name string
		mode int64
	}{{"etc/", 0o755}, {"root/", 0o700}, {"tmp/", 0o1777}, {"usr/", 0o755}} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: d.name, Mode: d.mode})
	}
	for _, l := range []string{"bin", "lib", "lib64", "sbin"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeSymlink, Name: l, Linkname: "usr/" + l})
	}
	for name, content := range map[string]string{"etc/passwd": "root:x:0:0:root:/root:/bin/sh\n", "etc/group": "root:x:0:\n"} {
		tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o644, Size: int64(len(content))})
		tw.Write([]byte(content))
	}
	tw.Close()
	file := filepath.Join(p.t.TempDir(), "builder.tar")
	if err := os.WriteFile(file, buf.Bytes(), 0o644); err != nil {
		p.t.Fatal(err)
	}
	p.must("import",
		"--change", "ENV PATH="+goroot+"/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"--change", "ENV GOPROXY=off",
		file, "localhost/modelserve-test/builder:1")
	return "localhost/modelserve-test/builder:1"
}

func goEnv(t *testing.T, name string) string {
	out, err := exec.Command("go", "env", name).Output()
	if err != nil {
		t.Fatalf("go env %s: %v", name, err)
	}
	return strings.TrimSpace(string(out))
}

// newDockerfileBuild readies podman to build the top-level Dockerfile
// offline, from bases made on this machine: a builder that borrows this
// machine's /usr (Go, gcc) and a runtime base of its shared libraries,
// pulled from a registry on loopback. build runs podman build with extra
// build arguments; its error carries podman's output.
func newDockerfileBuild(t *testing.T) (p *podman, build func(tag string, buildArgs ...string) (string, error)) {
	t.Helper()
	p = newPodman(t)
	lib, err := onnxrt.FindLibrary()
	if err != nil {
		t.Fatal(err)
	}
	goroot := goEnv(t, "GOROOT")
	builder := p.builderImage(goroot)
	// The base goes through a registry on loopback, as a real one would.
	reg := ocitest.StartRegistry(t, nil)
	baseRef, err := name.ParseReference(reg.Addr + "/base:1")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(baseRef, ocitest.Image(t, ocitest.HostBase(t, binary, lib), "base")); err != nil {
		t.Fatal(err)
	}
	p.must("pull", "--tls-verify=false", baseRef.String())
	p.must("tag", baseRef.String(), "localhost/modelserve-test/base:1")

	// Offline: Go's caches and ONNX Runtime's come from this machine.
	volumes := []string{
		"/usr:/usr:ro",
		goEnv(t, "GOMODCACHE") + ":/root/go/pkg/mod",
		goEnv(t, "GOCACHE") + ":/root/.cache/go-build",
		filepath.Dir(lib) + ":/root/.cache/modelserve/onnxruntime/" + onnxrt.PinnedVersion + ":ro",
		onnxrt.GPULibraryDir() + ":/root/.cache/modelserve/onnxruntime-gpu/" + onnxrt.PinnedGPUVersion + ":ro",
	}
	if !strings.HasPrefix(goroot, "/usr/") {
		volumes = append(volumes, goroot+":"+goroot+":ro")
	}
	build = func(tag string, buildArgs ...string) (string, error) {
		args := []string{"build", "--pull=never", "--network=none", "--format=docker",
			"--build-arg", "BUILDER=" + builder, "--build-arg", "BASE=localhost/modelserve-test/base:1", "--build-arg", "VERSION=podman-test",
			"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096", "-t", tag}
		for _, v := range volumes {
			args = append(args, "--volume", v)
		}
		for _, a := range buildArgs {
			args = append(args, "--build-arg", a)
		}
		start := time.Now()
		defer func() { t.Logf("podman build %s: %s", tag, time.Since(start).Round(time.Millisecond)) }()
		return p.run(append(args, testenv.RepoRoot(t))...)
	}
	return p, build
}

func TestDockerfile_pinsTheVersionsModelserveDoes(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(testenv.RepoRoot(t), "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	defaults := regexp.MustCompile(`(?m)^ARG ORT_VERSION=(\S+)$`).FindAllSubmatch(b, -1)
	if len(defaults) == 0 {
		t.Fatal("the Dockerfile declares no ORT_VERSION")
	}
	for _, m := range defaults {
		if string(m[1]) != onnxrt.PinnedVersion {
			t.Errorf("the Dockerfile's ORT_VERSION defaults to %s, modelserve pins %s", m[1], onnxrt.PinnedVersion)
		}
	}
	if hint := "--build-arg ORT_VERSION=" + onnxrt.PinnedGPUVersion; !strings.Contains(string(b), hint) {
		t.Errorf("the Dockerfile's GPU example lacks %s", hint)
	}
}

// TestDockerfile_buildsTheRuntimeImageWithPodman builds the top-level
// Dockerfile with podman; serves a mounted registry with the image; then
// gives it to modelserve build as a base, which must add only the model
// layer, and serves that image too.
func TestDockerfile_buildsTheRuntimeImageWithPodman(t *testing.T) {
	p, build := newDockerfileBuild(t)
	if out, err := build("localhost/modelserve-test/runtime:cpu"); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}

	var inspect []struct {
		Config struct {
			User       string
			Labels     map[string]string
			Entrypoint []string
		}
		Healthcheck struct{ Test []string }
	}
	if err := json.Unmarshal([]byte(p.must("image", "inspect", "localhost/modelserve-test/runtime:cpu")), &inspect); err != nil || len(inspect) != 1 {
		t.Fatalf("podman image inspect: %v", err)
	}
	cfg := inspect[0].Config
	if hc := inspect[0].Healthcheck.Test; cfg.User != "1000:1000" || strings.Join(hc, " ") != "CMD /opt/modelserve/bin/modelserve health" {
		t.Errorf("user %q, healthcheck %v", cfg.User, hc)
	}
	if l := cfg.Labels; l["dev.modelserve.runtime"] != "podman-test+ort"+onnxrt.PinnedVersion+"-cpu" || l["dev.modelserve.onnxruntime"] != onnxrt.PinnedVersion {
		t.Errorf("labels %v", l)
	}

	// The runtime image serves a registry mounted into it.
	c := newCLI(t)
	c.logIris()
	if err := exec.Command("chmod", "-R", "a+rX", c.registry).Run(); err != nil {
		t.Fatal(err)
	}
	p.serveIris(t, "localhost/modelserve-test/runtime:cpu", "-v", c.registry+":/opt/modelserve/registry:ro", "-e", "MODELSERVE_MODEL=iris")

	// As a base: modelserve build adds the model layer only.
	reg := ocitest.StartRegistry(t, nil)
	p.must("push", "--tls-verify=false", "localhost/modelserve-test/runtime:cpu", "docker://"+reg.Addr+"/modelserve:cpu")
	out, errOut, err := c.run("build", "--model", "iris", "--base", reg.Addr+"/modelserve:cpu", "--repo", reg.Addr+"/models/iris")
	if err != nil {
		t.Fatalf("build on the runtime image: %v\n%s", err, errOut)
	}
	ref := lastLine(out)
	var runtimeLayers, modelLayers struct{ Layers []string }
	for _, x := range []struct {
		ref string
		to  any
	}{{reg.Addr + "/modelserve:cpu", &runtimeLayers}, {ref, &modelLayers}} {
		b, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+x.ref).Output()
		if err != nil {
			t.Fatalf("skopeo inspect %s: %v", x.ref, err)
		}
		json.Unmarshal(b, x.to)
	}
	if len(modelLayers.Layers) != len(runtimeLayers.Layers)+1 || strings.Join(modelLayers.Layers[:len(runtimeLayers.Layers)], ",") != strings.Join(runtimeLayers.Layers, ",") {
		t.Errorf("the model image's layers %v are not the runtime image's %v and one more", modelLayers.Layers, runtimeLayers.Layers)
	}
	p.must("pull", "--tls-verify=false", ref)
	p.serveIris(t, ref)
}

// TestDockerfile_gpuVariant builds the CUDA runtime image, whose ONNX
// Runtime is the release with published CUDA providers, and runs it here,
// without a GPU, where it must serve on the CPU; and refuses a build whose
// ORT_VERSION does not match the libraries.
func TestDockerfile_gpuVariant(t *testing.T) {
	p, build := newDockerfileBuild(t)
	out, err := build("localhost/modelserve-test/runtime:mislabelled", "DEVICE=cuda")
	if err == nil || !strings.Contains(err.Error(), "build with --build-arg ORT_VERSION="+onnxrt.PinnedGPUVersion) {
		t.Errorf("DEVICE=cuda with the CPU's ORT_VERSION: %v\n%s", err, out)
	}
	if out, err := build("localhost/modelserve-test/runtime:cuda", "DEVICE=cuda", "ORT_VERSION="+onnxrt.PinnedGPUVersion); err != nil {
		t.Fatalf("podman build: %v\n%s", err, out)
	}
	var inspect []struct {
		Config struct{ Labels map[string]string }
	}
	json.Unmarshal([]byte(p.must("image", "inspect", "localhost/modelserve-test/runtime:cuda")), &inspect)
	if l := inspect[0].Config.Labels; l["dev.modelserve.device"] != "cuda" || l["dev.modelserve.onnxruntime"] != onnxrt.PinnedGPUVersion {
		t.Errorf("labels %v", l)
	}
	c := newCLI(t)
	c.logIris()
	exec.Command("chmod", "-R", "a+rX", c.registry).Run()
	logs := p.serveIris(t, "localhost/modelserve-test/runtime:cuda", "-v", c.registry+":/opt/modelserve/registry:ro", "-e", "MODELSERVE_MODEL=iris")
	for _, want := range []string{"ort_version=" + onnxrt.PinnedGPUVersion, "no GPU, running on the CPU", `reason="no NVML`, "device=cpu"} {
		if !strings.Contains(logs, want) {
			t.Errorf("the CUDA image's log lacks %q:\n%s", want, logs)
		}
	}
}

// serveIris runs an image with podman, published on a free loopback port,
// and checks its answer and its HEALTHCHECK.
func (p *podman) serveIris(t *testing.T, image string, runArgs ...string) (logs string) {
	t.Helper()
	port := strings.TrimPrefix(freePort(t), ":")
	args := append([]string{"run", "-d", "--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
		"-p", "127.0.0.1:" + port + ":8080"}, runArgs...)
	id := strings.TrimSpace(p.must(append(args, image)...))
	defer p.run("rm", "--force", id)
	// The server logs to standard error, which podman logs keeps apart.
	containerLogs := func() string {
		out, _ := exec.Command("podman", append(append([]string{}, p.args...), "logs", id)...).CombinedOutput()
		return string(out)
	}
	defer func() { logs = containerLogs() }()
	s := &service{t: t, url: "http://127.0.0.1:" + port, logs: &testenv.SyncBuffer{}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if code, _, err := s.tryGet("/healthcheck"); err == nil && code == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s is not ready after 30s:\n%s", image, containerLogs())
		}
		time.Sleep(50 * time.Millisecond)
	}
	code, body := s.post("/predict", `{"data": [[0, 5.1, 3.5, 1.4, 0.2], [1, 6.7, 3.0, 5.2, 2.3]]}`)
	if code != 200 || body != `{"data":[[0,{"label":0}],[1,{"label":2}]]}` {
		t.Errorf("%s: POST /predict = %d %.200s\n%s", image, code, body, containerLogs())
	}
	if out, err := p.run("healthcheck", "run", id); err != nil {
		t.Errorf("%s: podman healthcheck run: %v %s", image, err, out)
	}
	// The server's process, seen from the host: its real and effective uid.
	pid := strings.TrimSpace(p.must("inspect", "--format", "{{.State.Pid}}", id))
	status, err := os.ReadFile("/proc/" + pid + "/status")
	if err != nil {
		t.Fatal(err)
	}
	if uid := regexp.MustCompile(`(?m)^Uid:\s+(\d+)\s+(\d+)`).FindStringSubmatch(string(status)); uid == nil || uid[1] != "1000" || uid[2] != "1000" {
		t.Errorf("%s runs as %v, not uid 1000", image, uid)
	}
	return ""
}

// tryGet is get without failing the test: for polling.
func (s *service) tryGet(path string) (int, string, error) {
	resp, err := http.Get(s.url + path)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}
