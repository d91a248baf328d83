package main

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modelserve/modelserve/internal/ocitest"
	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/onnxrt"
)

// baseFor makes a base image from this machine's libraries that runs the
// test binary and ONNX Runtime: "oci:DIR:base".
func baseFor(t *testing.T) string {
	t.Helper()
	lib, err := onnxrt.FindLibrary()
	if err != nil {
		t.Fatal(err)
	}
	return "oci:" + ocitest.HostBase(t, binary, lib) + ":base"
}

// lastLine is a command's last line of output: the pushed reference.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

func TestBuild_pushesOnceThenOnlyTheModelLayer(t *testing.T) {
	reg := ocitest.StartRegistry(t, nil)
	c := newCLI(t)
	c.logIris()
	base := baseFor(t)
	repo := reg.Addr + "/models/iris"

	out, errOut, err := c.run("build", "--model", "iris:1", "--base", base, "--repo", repo, "--source", "https://example.com/iris-training")
	if err != nil {
		t.Fatalf("build: %v\n%s", err, errOut)
	}
	ref := lastLine(out)
	if !strings.HasPrefix(ref, repo+"@sha256:") {
		t.Fatalf("last line = %q, want %s@sha256:...", ref, repo)
	}
	first := reg.BlobsReceived()
	// base layer, runtime layer, model layer, config
	if len(first) != 4 {
		t.Fatalf("first push sent %d blobs, want 4: %v\n%s", len(first), first, errOut)
	}

	// What a registry client sees: skopeo reads the annotations and labels.
	raw, err := exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+repo+":iris-1").Output()
	if err != nil {
		t.Fatalf("skopeo inspect --raw: %v", err)
	}
	var manifest struct {
		MediaType   string            `json:"mediaType"`
		Annotations map[string]string `json:"annotations"`
		Layers      []struct{ Digest string }
	}
	if err := json.Unmarshal(raw, &manifest); err != nil {
		t.Fatal(err)
	}
	sha := strings.TrimSpace(c.must("registry", "show", "iris:1", "--json"))
	var v struct{ SHA256 string }
	json.Unmarshal([]byte(sha), &v)
	for k, want := range map[string]string{
		"dev.modelserve.model.name":       "iris",
		"dev.modelserve.model.version":    "1",
		"dev.modelserve.model.sha256":     v.SHA256,
		"dev.modelserve.model.source":     "https://example.com/iris-training",
		"org.opencontainers.image.source": "https://example.com/iris-training",
		"dev.modelserve.version":          "dev",
		"dev.modelserve.device":           "cpu",
	} {
		if got := manifest.Annotations[k]; got != want {
			t.Errorf("annotation %s = %q, want %q", k, got, want)
		}
	}
	if manifest.MediaType != "application/vnd.oci.image.manifest.v1+json" || len(manifest.Layers) != 3 {
		t.Errorf("manifest: %s with %d layers", manifest.MediaType, len(manifest.Layers))
	}
	inspect, err := exec.Command("skopeo", "inspect", "--tls-verify=false", "docker://"+repo+":iris-1").Output()
	if err != nil {
		t.Fatalf("skopeo inspect: %v", err)
	}
	var info struct {
		Digest string
		Labels map[string]string
	}
	if err := json.Unmarshal(inspect, &info); err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(ref, "@"+info.Digest) || info.Labels["dev.modelserve.model.name"] != "iris" {
		t.Errorf("skopeo sees %s with labels %v; build said %s", info.Digest, info.Labels, ref)
	}

	// The same build again: the content tag is there, nothing is sent.
	out, errOut, err = c.run("build", "--model", "iris:1", "--base", base, "--repo", repo, "--source", "https://example.com/iris-training")
	if err != nil {
		t.Fatalf("second build: %v\n%s", err, errOut)
	}
	if lastLine(out) != ref {
		t.Errorf("second build gave %s, first %s", lastLine(out), ref)
	}
	if got := reg.BlobsReceived(); len(got) != len(first) {
		t.Errorf("the unchanged rebuild sent %d blobs", len(got)-len(first))
	}
	if !strings.Contains(errOut, "already holds this image") {
		t.Errorf("second build's report:\n%s", errOut)
	}

	// A new version: only the model layer (and the config naming it) travel.
	c.must("registry", "log", "--name", "iris", "--version", "2", "--file", testenv.Model(t, "iris"),
		"--function", "predict=label", "--features", "sepal_length,sepal_width,petal_length,petal_width")
	out, errOut, err = c.run("build", "--model", "iris:2", "--base", base, "--repo", repo)
	if err != nil {
		t.Fatalf("build of version 2: %v\n%s", err, errOut)
	}
	sent := reg.BlobsReceived()[len(first):]
	raw, err = exec.Command("skopeo", "inspect", "--raw", "--tls-verify=false", "docker://"+repo+":iris-2").Output()
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(raw); lastLine(out) != repo+"@sha256:"+hex.EncodeToString(sum[:]) {
		t.Errorf("build printed %s; the registry's iris-2 manifest hashes to %x", lastLine(out), sum)
	}
	var second struct {
		Config struct{ Digest string }
		Layers []struct{ Digest string }
	}
	json.Unmarshal(raw, &second)
	if len(second.Layers) != 3 || second.Layers[0].Digest != manifest.Layers[0].Digest || second.Layers[1].Digest != manifest.Layers[1].Digest {
		t.Fatalf("version 2's layers %v do not share the base and runtime layers %v", second.Layers, manifest.Layers)
	}
	want := []string{second.Layers[2].Digest, second.Config.Digest}
	if len(sent) != 2 || !(sent[0] == want[0] && sent[1] == want[1] || sent[0] == want[1] && sent[1] == want[0]) {
		t.Errorf("version 2 sent %v, want only the model layer and config %v\n%s", sent, want, errOut)
	}
}

// TestBuild_imageServesFromItsOwnRootFS unpacks the image with umoci and
// runs its entrypoint with runc, as a container runtime would, then asks
// it for predictions and its health over loopback.
func TestBuild_imageServesFromItsOwnRootFS(t *testing.T) {
	c := newCLI(t)
	c.logIris()
	dir := filepath.Join(t.TempDir(), "layout")
	c.must("build", "--model", "iris", "--base", baseFor(t), "--oci-layout", dir)
	ctr := runImage(t, dir, "iris-1")
	ctr.checkIris()
	ctr.stop()
	if !strings.Contains(ctr.logs.String(), "ort_version=1.30.0") {
		t.Errorf("the image did not run ONNX Runtime 1.30.0:\n%s", ctr.logs)
	}
}

// TestBuild_gpuImageFallsBackToTheCPU builds a GPU image, with ONNX
// Runtime's CUDA provider libraries, and runs it here, where there is no
// GPU: it must say so and serve on the CPU with the image's own runtime.
func TestBuild_gpuImageFallsBackToTheCPU(t *testing.T) {
	libs := onnxrt.GPULibraryDir()
	if _, err := os.Stat(filepath.Join(libs, "libonnxruntime_providers_cuda.so")); err != nil {
		t.Fatalf("the GPU libraries are needed (make test fetches them with scripts/fetch-onnxruntime.sh --gpu): %v", err)
	}
	c := newCLI(t)
	c.logIris()
	dir := filepath.Join(t.TempDir(), "layout")
	c.must("build", "--model", "iris", "--gpu", "--base", baseFor(t), "--oci-layout", dir)
	img := ocitest.Image(t, dir, "iris-1")
	cfg, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if l := cfg.Config.Labels; l["dev.modelserve.device"] != "cuda" || l["dev.modelserve.onnxruntime"] != onnxrt.PinnedGPUVersion {
		t.Errorf("labels = %v", l)
	}
	ctr := runImage(t, dir, "iris-1")
	for _, lib := range []string{"libonnxruntime.so.1", "libonnxruntime_providers_shared.so", "libonnxruntime_providers_cuda.so", "libonnxruntime_providers_tensorrt.so"} {
		if _, err := os.Stat(filepath.Join(ctr.rootfs, "opt/modelserve/lib", lib)); err != nil {
			t.Errorf("the GPU image lacks %s: %v", lib, err)
		}
	}
	ctr.checkIris()
	ctr.stop()
	for _, want := range []string{"no GPU, running on the CPU", `reason="no NVML`, "ort_version=" + onnxrt.PinnedGPUVersion, "device=cpu"} {
		if !strings.Contains(ctr.logs.String(), want) {
			t.Errorf("the GPU image's log lacks %q:\n%s", want, ctr.logs)
		}
	}
}

// container is an image running under runc, on the host's network.
type container struct {
	*service
	id     string
	rootfs string
	exited chan struct{}
}

// runImage unpacks the image tagged tag in the layout with umoci and runs
// it with runc: no terminal, the host's network, the port moved off 8080
// through the environment the image reads. It returns once it is ready.
func runImage(t *testing.T, layoutDir, tag string) *container {
	t.Helper()
	for _, tool := range []string{"umoci", "runc"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed (scripts/deps.sh test installs it): %v", tool, err)
		}
	}
	if os.Geteuid() != 0 {
		t.Fatal("runc runs containers here only as root: run make test as root (CI does)")
	}
	bundle := filepath.Join(t.TempDir(), "bundle")
	if out, err := exec.Command("umoci", "unpack", "--image", layoutDir+":"+tag, bundle).CombinedOutput(); err != nil {
		t.Fatalf("umoci unpack: %v\n%s", err, out)
	}
	var spec map[string]any
	specPath := filepath.Join(bundle, "config.json")
	b, err := os.ReadFile(specPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &spec); err != nil {
		t.Fatal(err)
	}
	process := spec["process"].(map[string]any)
	if user := process["user"].(map[string]any); user["uid"].(float64) != 1000 {
		t.Errorf("the image runs as uid %v, want 1000", user["uid"])
	}
	if args := fmt.Sprint(process["args"]); args != "[/opt/modelserve/bin/modelserve serve]" {
		t.Errorf("entrypoint = %s", args)
	}
	port := strings.TrimPrefix(freePort(t), ":")
	process["terminal"] = false
	process["env"] = append(process["env"].([]any), "MODELSERVE_PORT="+port)
	linux := spec["linux"].(map[string]any)
	var namespaces []any
	for _, ns := range linux["namespaces"].([]any) {
		if ns.(map[string]any)["type"] != "network" {
			namespaces = append(namespaces, ns)
		}
	}
	linux["namespaces"] = namespaces
	if b, err = json.Marshal(spec); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(specPath, b, 0o644); err != nil {
		t.Fatal(err)
	}

	id := fmt.Sprintf("modelserve-test-%d-%d", os.Getpid(), time.Now().UnixNano())
	logs := &testenv.SyncBuffer{}
	run := exec.Command("runc", "run", "--bundle", bundle, id)
	run.Stdout, run.Stderr = logs, logs
	if err := run.Start(); err != nil {
		t.Fatal(err)
	}
	// exited closes when runc returns, so every waiter sees it.
	exited := make(chan struct{})
	go func() { run.Wait(); close(exited) }()
	t.Cleanup(func() {
		exec.Command("runc", "kill", id, "KILL").Run()
		<-exited
		exec.Command("runc", "delete", "--force", id).Run()
	})
	ctr := &container{
		service: &service{t: t, url: "http://127.0.0.1:" + port, logs: logs},
		id:      id, rootfs: filepath.Join(bundle, "rootfs"), exited: exited,
	}
	waitListening(t, ctr.url, exited, logs)
	ctr.waitReady()
	return ctr
}

// checkIris asks the container for the README's predictions and runs its
// HEALTHCHECK command inside it.
func (c *container) checkIris() {
	c.t.Helper()
	code, body := c.post("/predict", `{"data": [[0, 5.1, 3.5, 1.4, 0.2], [1, 6.7, 3.0, 5.2, 2.3]]}`)
	if code != 200 || body != `{"data":[[0,{"label":0}],[1,{"label":2}]]}` {
		c.t.Fatalf("POST /predict inside the image = %d %.200s\n%s", code, body, c.logs)
	}
	if out, err := exec.Command("runc", "exec", c.id, "/opt/modelserve/bin/modelserve", "health").CombinedOutput(); err != nil || strings.TrimSpace(string(out)) != "ready" {
		c.t.Errorf("modelserve health inside the container: %v %s", err, out)
	}
}

// stop sends SIGTERM and expects a clean shutdown.
func (c *container) stop() {
	c.t.Helper()
	if err := exec.Command("runc", "kill", c.id, "TERM").Run(); err != nil {
		c.t.Fatal(err)
	}
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.t.Fatalf("the container did not stop on SIGTERM\n%s", c.logs)
	}
	if !strings.Contains(c.logs.String(), "shutting down") {
		c.t.Errorf("no clean shutdown in the container's log:\n%s", c.logs)
	}
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, port, _ := net.SplitHostPort(l.Addr().String())
	return ":" + port
}

// waitListening waits for a server to accept connections, failing early if
// its process exits.
func waitListening(t *testing.T, url string, exited <-chan struct{}, logs fmt.Stringer) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			t.Fatalf("the server exited\n%s", logs)
		default:
		}
		if resp, err := http.Get(url + "/healthcheck"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("nothing listens at %s after 30s\n%s", url, logs)
}

// TestBuild_sameDigestFromTwoCheckouts copies the source tree twice, with
// different paths and file times, builds modelserve in each as the Makefile
// does, logs the same model into each one's registry at different times,
// and packages it: the two images must have one digest.
func TestBuild_sameDigestFromTwoCheckouts(t *testing.T) {
	root := testenv.RepoRoot(t)
	out, err := exec.Command("git", "-C", root, "ls-files", "-z", "--cached", "--others", "--exclude-standard").Output()
	if err != nil {
		t.Fatalf("listing the source files: %v", err)
	}
	baseDir := strings.TrimSuffix(strings.TrimPrefix(baseFor(t), "oci:"), ":base")
	var digests, binaries []string
	for i, when := range []time.Time{time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC), time.Now()} {
		checkout := filepath.Join(t.TempDir(), fmt.Sprintf("checkout-%d", i))
		for _, f := range strings.Split(strings.TrimRight(string(out), "\x00"), "\x00") {
			src := filepath.Join(root, f)
			info, err := os.Lstat(src)
			if err != nil || !info.Mode().IsRegular() {
				continue // deleted in the work tree, or not a file
			}
			b, err := os.ReadFile(src)
			if err != nil {
				t.Fatal(err)
			}
			dst := filepath.Join(checkout, f)
			if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(dst, b, info.Mode().Perm()); err != nil {
				t.Fatal(err)
			}
			os.Chtimes(dst, when, when)
		}
		bin := filepath.Join(checkout, "bin", "modelserve")
		build := exec.Command("go", "build", "-trimpath", "-buildvcs=false", "-ldflags", "-X main.version=repro", "-o", bin, "./cmd/modelserve")
		build.Dir = checkout
		if b, err := build.CombinedOutput(); err != nil {
			t.Fatalf("go build in %s: %v\n%s", checkout, err, b)
		}
		sum, err := fileSHA256(bin)
		if err != nil {
			t.Fatal(err)
		}
		binaries = append(binaries, sum)

		model := filepath.Join(checkout, "iris.onnx")
		b, err := os.ReadFile(testenv.Model(t, "iris"))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(model, b, 0o600); err != nil {
			t.Fatal(err)
		}
		reg := filepath.Join(checkout, "registry")
		run := func(args ...string) string {
			cmd := exec.Command(bin, append([]string{"--registry", reg}, args...)...)
			var stderr strings.Builder
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("modelserve %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
			}
			return string(out)
		}
		run("registry", "log", "--name", "iris", "--version", "1", "--file", model, "--function", "predict=label",
			"--features", "sepal_length,sepal_width,petal_length,petal_width")
		// Logged at another time, as on another machine.
		manifest := filepath.Join(reg, "models", "iris", "1", "manifest.json")
		m, err := os.ReadFile(manifest)
		if err != nil {
			t.Fatal(err)
		}
		m = regexp.MustCompile(`"created": "[^"]*"`).ReplaceAll(m, []byte(`"created": "`+when.Format(time.RFC3339)+`"`))
		if err := os.WriteFile(manifest, m, 0o644); err != nil {
			t.Fatal(err)
		}
		// Each machine has its own copy of the base, at its own path.
		base := filepath.Join(checkout, "base")
		if out, err := exec.Command("cp", "-r", baseDir, base).CombinedOutput(); err != nil {
			t.Fatalf("copying the base: %v %s", err, out)
		}
		digests = append(digests, lastLine(run("build", "--model", "iris:1", "--base", "oci:"+base+":base", "--oci-layout", filepath.Join(checkout, "image"))))
	}
	if binaries[0] != binaries[1] {
		t.Errorf("the two checkouts built different binaries: %s and %s", binaries[0], binaries[1])
	}
	digest := func(ref string) string { return ref[strings.LastIndex(ref, "@")+1:] }
	if digest(digests[0]) != digest(digests[1]) {
		t.Errorf("the two checkouts built different images: %s and %s", digests[0], digests[1])
	}
}

func fileSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// TestBuild_registryCredentialsFromTheDockerConfig pushes to a registry
// that asks for a password, with the credentials a `docker login` leaves.
func TestBuild_registryCredentialsFromTheDockerConfig(t *testing.T) {
	reg := ocitest.StartRegistry(t, map[string]string{"ci": "s3cret"})
	c := newCLI(t)
	c.logIris()
	base := baseFor(t)
	lib, err := onnxrt.FindLibrary()
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name     string
		password string
		wantErr  string
	}{
		{"right password", "s3cret", ""},
		{"wrong password", "guess", "wants credentials"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			auth := base64.StdEncoding.EncodeToString([]byte("ci:" + tt.password))
			config := fmt.Sprintf(`{"auths": {%q: {"auth": %q}}}`, reg.Addr, auth)
			if err := os.MkdirAll(filepath.Join(home, ".docker"), 0o700); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(home, ".docker", "config.json"), []byte(config), 0o600); err != nil {
				t.Fatal(err)
			}
			cmd := c.command("build", "--model", "iris", "--base", base, "--repo", reg.Addr+"/private/iris")
			cmd.Env = append(cmd.Env, "HOME="+home, "DOCKER_CONFIG=", onnxrt.LibraryEnv+"="+lib)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("build: %v\n%s", err, stderr.String())
			case tt.wantErr == "" && !strings.HasPrefix(lastLine(stdout.String()), reg.Addr+"/private/iris@sha256:"):
				t.Errorf("pushed %q", stdout.String())
			case tt.wantErr != "" && (err == nil || !strings.Contains(stderr.String(), tt.wantErr)):
				t.Errorf("with a wrong password: %v\n%s", err, stderr.String())
			}
		})
	}
}
