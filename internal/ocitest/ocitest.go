// Package ocitest gives image tests the real parts they run against: an OCI
// distribution registry (Debian's docker-registry) on loopback, and a base
// image made from this machine's own shared libraries, since no public
// image registry can be reached.
package ocitest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/types"
	"golang.org/x/crypto/bcrypt"

	"github.com/modelserve/modelserve/build"
	"github.com/modelserve/modelserve/internal/testenv"
)

// Registry is a docker-registry process serving plain HTTP on loopback.
type Registry struct {
	// Addr is 127.0.0.1:PORT.
	Addr string
	// Log holds its access log: one line per request.
	Log *testenv.SyncBuffer

	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
	marks  int
}

// StartRegistry starts a registry for the test, stopped when it ends.
// With users, it asks for HTTP basic credentials (htpasswd, bcrypt).
func StartRegistry(t testing.TB, users map[string]string) *Registry {
	t.Helper()
	r, err := Start(t.TempDir(), users)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Stop)
	return r
}

// Start starts a registry that keeps its configuration and blobs in dir.
func Start(dir string, users map[string]string) (*Registry, error) {
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("docker-registry is needed (scripts/deps.sh test installs it): %w", err)
	}
	auth := ""
	if len(users) > 0 {
		var lines []string
		for u, p := range users {
			h, err := bcrypt.GenerateFromPassword([]byte(p), bcrypt.MinCost)
			if err != nil {
				return nil, err
			}
			lines = append(lines, u+":"+string(h))
		}
		if err := os.WriteFile(filepath.Join(dir, "htpasswd"), []byte(strings.Join(lines, "\n")+"\n"), 0o600); err != nil {
			return nil, err
		}
		auth = fmt.Sprintf("auth:\n  htpasswd:\n    realm: modelserve-test\n    path: %s\n", filepath.Join(dir, "htpasswd"))
	}
	// A port found free may be taken before the registry binds it: retry.
	for attempt := 0; ; attempt++ {
		addr, err := freeAddr()
		if err != nil {
			return nil, err
		}
		config := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog:
    disabled: false
storage:
  filesystem:
    rootdirectory: %s
http:
  addr: %s
  secret: modelserve-test
%s`, filepath.Join(dir, "data"), addr, auth)
		cfg := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(cfg, []byte(config), 0o600); err != nil {
			return nil, err
		}
		r := &Registry{Addr: addr, Log: &testenv.SyncBuffer{}, dir: dir, exited: make(chan struct{})}
		r.cmd = exec.Command(bin, "serve", cfg)
		r.cmd.Stdout, r.cmd.Stderr = r.Log, r.Log
		// It ends with whoever started it, even one killed halfway.
		r.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
		if err := r.cmd.Start(); err != nil {
			return nil, err
		}
		go func() { r.cmd.Wait(); close(r.exited) }()
		if waitUp(addr, r.exited) {
			return r, nil
		}
		r.Stop()
		if attempt == 2 {
			return nil, fmt.Errorf("docker-registry did not start:\n%s", r.Log)
		}
	}
}

// Stop ends the registry process.
func (r *Registry) Stop() {
	r.cmd.Process.Kill()
	<-r.exited
}

func freeAddr() (string, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer l.Close()
	return l.Addr().String(), nil
}

// waitUp polls /v2/ until the registry answers (200, or 401 with auth).
func waitUp(addr string, exited <-chan struct{}) bool {
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-exited:
			return false
		default:
		}
		if resp, err := http.Get("http://" + addr + "/v2/"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusUnauthorized {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	return false
}

var accessRE = regexp.MustCompile(`"([A-Z]+) (\S+) HTTP/[0-9.]+" (\d+) `)

// Request is one line of the registry's access log.
type Request struct {
	Method, Path string
	Status       int
}

// Requests are those the registry has logged so far, in order.
func (r *Registry) Requests() []Request {
	var out []Request
	sc := bufio.NewScanner(strings.NewReader(r.Log.String()))
	for sc.Scan() {
		if m := accessRE.FindStringSubmatch(sc.Text()); m != nil {
			var status int
			fmt.Sscan(m[3], &status)
			out = append(out, Request{Method: m[1], Path: m[2], Status: status})
		}
	}
	return out
}

// Mark makes a request of its own and waits until the registry has logged
// it: the registry writes its access log after answering, so a request
// just answered may not be in it yet, but it is once a later one is.
// Requests()[Mark():] are those made after the call.
func (r *Registry) Mark() int {
	r.marks++
	path := fmt.Sprintf("/v2/?mark=%d", r.marks)
	if resp, err := http.Get("http://" + r.Addr + path); err == nil {
		resp.Body.Close()
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for i, q := range r.Requests() {
			if q.Path == path {
				return i + 1
			}
		}
	}
	return len(r.Requests())
}

// BlobsReceived are the digests of the blobs the registry stored from
// uploads, as its own log tells: PUTs that completed an upload.
func (r *Registry) BlobsReceived() []string {
	var out []string
	logged := r.Mark()
	for _, q := range r.Requests()[:logged] {
		if q.Method != http.MethodPut || q.Status != http.StatusCreated || !strings.Contains(q.Path, "/blobs/uploads/") {
			continue
		}
		if _, query, ok := strings.Cut(q.Path, "?"); ok {
			for _, kv := range strings.Split(query, "&") {
				if d, ok := strings.CutPrefix(kv, "digest="); ok {
					out = append(out, strings.ReplaceAll(d, "%3A", ":"))
				}
			}
		}
	}
	return out
}

// BlobSize is the size of a blob as the registry stored it.
func (r *Registry) BlobSize(digest string) (int64, error) {
	hex, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(hex) < 2 {
		return 0, fmt.Errorf("blob digest %q is not sha256", digest)
	}
	info, err := os.Stat(filepath.Join(r.dir, "data", "docker", "registry", "v2", "blobs", "sha256", hex[:2], hex, "data"))
	if err != nil {
		return 0, err
	}
	return info.Size(), nil
}

// HostBase writes, as an OCI layout tagged "base", a minimal image holding
// what the given executables and shared libraries need from this machine
// (as ldd lists it), an /etc/passwd with uid 1000 and a /tmp: enough to run
// modelserve. It returns the layout's directory.
func HostBase(t testing.TB, binaries ...string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "base")
	if err := WriteHostBase(dir, binaries...); err != nil {
		t.Fatal(err)
	}
	return dir
}

// WriteHostBase writes HostBase's image into the layout dir.
func WriteHostBase(dir string, binaries ...string) error {
	var paths []string
	for _, b := range binaries {
		out, err := exec.Command("ldd", b).Output()
		if err != nil {
			return fmt.Errorf("ldd %s: %w", b, err)
		}
		for _, line := range strings.Split(string(out), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 3 && f[1] == "=>" && strings.HasPrefix(f[2], "/"):
				paths = append(paths, f[2])
			case len(f) >= 1 && strings.HasPrefix(f[0], "/"):
				paths = append(paths, f[0])
			}
		}
	}
	slices.Sort(paths)
	paths = slices.Compact(paths)
	files := []build.File{
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0:root:/root:/sbin/nologin\nmodelserve:x:1000:1000:modelserve:/tmp:/sbin/nologin\n")},
		{Path: "/etc/group", Mode: 0o644, Data: []byte("root:x:0:\nmodelserve:x:1000:\n")},
		{Path: "/tmp", Mode: 0o1777, Dir: true},
	}
	for _, p := range paths {
		files = append(files, build.File{Path: p, Mode: 0o755, Source: p})
	}
	layer, err := build.Layer(files)
	if err != nil {
		return err
	}
	img, err := mutate.Append(empty.Image, mutate.Addendum{Layer: layer})
	if err != nil {
		return err
	}
	cfg, err := img.ConfigFile()
	if err != nil {
		return err
	}
	cfg = cfg.DeepCopy()
	cfg.OS, cfg.Architecture = build.Platform().OS, build.Platform().Architecture
	cfg.Config.Env = []string{"PATH=/usr/local/bin:/usr/bin:/bin"}
	if img, err = mutate.ConfigFile(img, cfg); err != nil {
		return err
	}
	// OCI media types: skopeo and podman look past Docker ones in a layout.
	img = mutate.ConfigMediaType(mutate.MediaType(img, types.OCIManifestSchema1), types.OCIConfigJSON)
	p, err := layout.Write(dir, empty.Index)
	if err != nil {
		return err
	}
	return p.AppendImage(img, layout.WithAnnotations(map[string]string{"org.opencontainers.image.ref.name": "base"}))
}

// Image opens the image a layout holds under tag.
func Image(t testing.TB, dir, tag string) v1.Image {
	t.Helper()
	idx, err := layout.ImageIndexFromPath(dir)
	if err != nil {
		t.Fatal(err)
	}
	im, err := idx.IndexManifest()
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range im.Manifests {
		if d.Annotations["org.opencontainers.image.ref.name"] == tag {
			img, err := idx.Image(d.Digest)
			if err != nil {
				t.Fatal(err)
			}
			return img
		}
	}
	t.Fatalf("layout %s has no image tagged %q", dir, tag)
	return nil
}
