package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/deploy/local"
	"github.com/modelserve/modelserve/internal/ocitest"
)

// echoServer is a container that is not modelserve: it answers
// "NAME said BODY", records each call in a volume, and shows a secret.
const echoServer = `package main

import (
	"io"
	"net/http"
	"os"
)

func main() {
	http.HandleFunc("/healthcheck", func(w http.ResponseWriter, _ *http.Request) { w.Write([]byte("ok")) })
	http.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		f, err := os.OpenFile("/logs/calls", os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
		if err == nil {
			f.Write(append(body, '\n'))
			f.Close()
		}
		pw, _ := os.ReadFile("/secrets/password")
		w.Write([]byte(os.Getenv("CHARACTER_NAME") + " said " + string(body) + " (" + os.Getenv("API_USER") + ":" + string(pw) + ")"))
	})
	http.ListenAndServe(":"+os.Getenv("SERVER_PORT"), nil)
}
`

// TestServiceUp_otherImagesRunInPodman: a container that is not a
// modelserve image runs with podman, in a pod per instance, with its env,
// a local volume and secrets, behind the endpoint's listener.
func TestServiceUp_otherImagesRunInPodman(t *testing.T) {
	p := newPodman(t)
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "main.go"), []byte(echoServer), 0o644)
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module echo\n"), 0o644)
	bin := filepath.Join(src, "echo-server")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the echo server: %v\n%s", err, out)
	}
	// podman names a pulled layout after its path, which must be lowercase.
	layout, err := os.MkdirTemp("", "ms-echo-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(layout) })
	if err := ocitest.WriteHostBase(layout, bin); err != nil {
		t.Fatal(err)
	}
	p.must("pull", "oci:"+layout+":base")
	images := p.must("images", "--format", "{{.ID}}")
	p.must("tag", strings.Fields(images)[0], "localhost/echo-base:1")
	os.WriteFile(filepath.Join(src, "Containerfile"), []byte("FROM localhost/echo-base:1\nCOPY echo-server /usr/local/bin/echo-server\n"), 0o644)
	p.must("build", "--pull=never", "--network=none", "-t", "localhost/echo:1", "-f", filepath.Join(src, "Containerfile"), src)

	dir := t.TempDir()
	specFile := filepath.Join(dir, "echo.yaml")
	os.WriteFile(specFile, []byte((`spec:
  containers:
  - name: echo
    image: localhost/echo:1
    command: [/usr/local/bin/echo-server]
    env:
      SERVER_PORT: 8000
      CHARACTER_NAME: Bob
    readinessProbe:
      port: 8000
      path: /healthcheck
    volumeMounts:
    - name: logs
      mountPath: /logs
    secrets:
    - snowflakeSecret: creds
      secretKeyRef: username
      envVarName: API_USER
    - snowflakeSecret: creds
      directoryPath: /secrets
  endpoints:
  - name: echoendpoint
    port: 8000
    public: true
  volumes:
  - name: logs
    source: local
`)), 0o644)
	creds := filepath.Join(dir, "creds.env")
	os.WriteFile(creds, []byte("username=alice\npassword=s3cret\n"), 0o600)

	// runc here may not raise rlimits past these (machine.md); pods' pause
	// containers take no --ulimit, so podman's defaults say it.
	conf := filepath.Join(dir, "containers.conf")
	os.WriteFile(conf, []byte("[containers]\ndefault_ulimits = [\"nofile=4096:4096\", \"nproc=4096:4096\"]\n"), 0o644)
	t.Setenv("CONTAINERS_CONF", conf)
	c := newCLI(t)
	u := c.serviceUp("echo", specFile, "--instances", "2", "--publish", "echoendpoint=0", "--secret", "creds="+creds,
		"--podman", "podman "+strings.Join(p.args, " "))
	st := u.waitFor("both podman instances ready", allReady)
	for i := range 4 {
		resp, err := http.Post("http://"+st.Endpoints[0].Address+"/echo", "text/plain", strings.NewReader(fmt.Sprintf("hello %d", i)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("Bob said hello %d (alice:s3cret)", i); resp.StatusCode != 200 || string(b) != want {
			t.Errorf("echo: %d %q, want %q", resp.StatusCode, b, want)
		}
	}
	// Each instance has its own local volume; together they saw every call.
	calls := 0
	for i := range 2 {
		b, err := os.ReadFile(filepath.Join(local.ServiceDir(u.stateDir, "echo"), "instances", fmt.Sprint(i), "volumes", "logs", "calls"))
		if err != nil {
			t.Errorf("instance %d's volume: %v", i, err)
		}
		calls += strings.Count(string(b), "hello")
	}
	if calls != 4 {
		t.Errorf("the volumes recorded %d calls of 4", calls)
	}
	if st.Instances[0].Containers[0].Runs != "podman" {
		t.Errorf("status: %+v", st.Instances[0])
	}
}
