package local

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/deploy/spec"
)

func TestTranslator_mountPathsBecomeDirectories(t *testing.T) {
	tr := translator{"/data": "/here/data", "/data/models": "/elsewhere/m", "/secrets": "/s"}
	for in, want := range map[string]string{
		"/data":               "/here/data",
		"/data/in.parquet":    "/here/data/in.parquet",
		"/data/models/a.onnx": "/elsewhere/m/a.onnx",
		"/database/x":         "/database/x",
		"--input=/data/x.csv": "--input=/here/data/x.csv",
		"relative/data":       "relative/data",
		"--flag=value":        "--flag=value",
		"/data/a/../b":        "/here/data/b",
	} {
		if got, err := tr.path(in); got != want || err != nil {
			t.Errorf("path(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	// A path that climbs out of its volume does not become a path on this
	// machine outside it.
	for _, in := range []string{"/data/../../etc/passwd", "--in=/data/models/../../../etc", "/secrets/.."} {
		if got, err := tr.path(in); err == nil || !strings.Contains(err.Error(), "climbs out of the volume") {
			t.Errorf("path(%q) = %q, %v; want refused", in, got, err)
		}
	}
}

func TestModelserveArgv(t *testing.T) {
	tr := translator{"/in": "/host/in"}
	for _, tc := range []struct {
		name string
		c    spec.Container
		want string
	}{
		{"image entrypoint", spec.Container{}, "ms serve --model iris:1 --host 127.0.0.1 --port 4000 --registry /reg"},
		{"serve flags", spec.Container{Args: []string{"--workers", "2", "--port", "9000"}},
			"ms serve --workers 2 --port 9000 --model iris:1 --host 127.0.0.1 --port 4000 --registry /reg"},
		{"command and args", spec.Container{Command: []string{"/opt/modelserve/bin/modelserve", "job"}, Args: []string{"x", "--input", "/in/a.csv"}},
			"ms job x --input /host/in/a.csv --registry /reg"},
		{"model in args", spec.Container{Args: []string{"serve", "--model=other:2"}},
			"ms serve --model=other:2 --host 127.0.0.1 --port 4000 --registry /reg"},
	} {
		argv, err := modelserveArgv("ms", "/reg", tc.c, "iris:1", 4000, tr)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Join(argv, " ")
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestContainerPort(t *testing.T) {
	for _, tc := range []struct {
		c    spec.Container
		want int
		err  bool
	}{
		{spec.Container{}, 8080, false},
		{spec.Container{Env: map[string]string{"MODELSERVE_PORT": "9000"}}, 9000, false},
		{spec.Container{Args: []string{"--port", "7000"}, Env: map[string]string{"MODELSERVE_PORT": "9000"}}, 7000, false},
		{spec.Container{Args: []string{"--port=x"}}, 0, true},
	} {
		got, err := containerPort(tc.c)
		if got != tc.want || (err != nil) != tc.err {
			t.Errorf("containerPort(%+v) = %d, %v", tc.c, got, err)
		}
	}
}

func TestParseSecret(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "creds.env"), []byte("# a comment\nusername = bob\npassword=s3cret=x\n"), 0o600)
	keysDir := filepath.Join(dir, "keys")
	os.Mkdir(keysDir, 0o700)
	os.WriteFile(filepath.Join(keysDir, "access_token"), []byte("tok\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "climbing.env"), []byte("../../escape=x\n"), 0o600)
	env := map[string]string{"PW": "pw", "USER": "u"}
	getenv := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct {
		arg  string
		want map[string]string
		err  string
	}{
		{arg: "c=" + filepath.Join(dir, "creds.env"), want: map[string]string{"username": "bob", "password": "s3cret=x"}},
		{arg: "c=" + keysDir, want: map[string]string{"access_token": "tok"}},
		{arg: "c=env:PW", want: map[string]string{"secret_string": "pw"}},
		{arg: "c=env:password=PW,username=USER", want: map[string]string{"password": "pw", "username": "u"}},
		{arg: "c=env:NOPE", err: "$NOPE is not set"},
		{arg: "c", err: "write NAME=FILE"},
		{arg: "c=" + filepath.Join(dir, "missing"), err: "no such file"},
		// A key becomes a file's name in the secret's folder.
		{arg: "c=" + filepath.Join(dir, "climbing.env"), err: `secret key "../../escape" must start with a letter or digit`},
		{arg: "c=env:a/b=PW", err: `secret key "a/b"`},
	} {
		_, keys, err := ParseSecret(tc.arg, getenv)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.arg, err, tc.err)
			}
			continue
		}
		if err != nil || !reflect.DeepEqual(keys, tc.want) {
			t.Errorf("%s: %v, %v", tc.arg, keys, err)
		}
	}
	secrets := map[string]map[string]string{"Creds": {"username": "bob", "password": "pw"}, "token": {"secret_string": "t"}}
	for _, tc := range []struct {
		s    spec.Secret
		want string
		err  string
	}{
		{s: spec.Secret{SnowflakeSecret: "creds", SecretKeyRef: "password"}, want: "pw"},
		{s: spec.Secret{SnowflakeSecret: "token"}, want: "t"},
		{s: spec.Secret{SnowflakeSecret: "creds"}, err: "say which with secretKeyRef"},
		{s: spec.Secret{SnowflakeSecret: "creds", SecretKeyRef: "pin"}, err: `no key "pin"`},
		{s: spec.Secret{SnowflakeSecret: "other"}, err: "--secret other=FILE"},
	} {
		got, err := secretValue(secrets, tc.s)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%+v: %v, want %q", tc.s, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%+v: %q, %v", tc.s, got, err)
		}
	}
}

func TestStageDir(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "models", "v1"), 0o755)
	stages := map[string]string{"model_stage": root}
	for _, tc := range []struct {
		source string
		want   string
		err    string
	}{
		{source: "@model_stage", want: root},
		{source: "@db.schema.MODEL_STAGE/models/v1", want: filepath.Join(root, "models", "v1")},
		{source: "@model_stage/missing", err: "is not a directory"},
		{source: "@other", err: "--stage other=DIR"},
	} {
		got, err := stageDir(stages, spec.Volume{Name: "v", Source: tc.source})
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%s: %v, want %q", tc.source, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%s: %q, %v", tc.source, got, err)
		}
	}
}

func TestPodmanRun(t *testing.T) {
	o := Options{Podman: []string{"podman", "--root", "/r"}, PodmanRunArgs: []string{"--ulimit", "nofile=4096:4096"}}
	c := spec.Container{Name: "echo", Image: "localhost/echo:1", Command: []string{"python3", "main.py"}, Args: []string{"Bob"}}
	got := strings.Join(podmanRun(o, "pod", "pod-echo", c, map[string]string{"B": "2", "A": "1"}, translator{"/logs": "/state/logs"}), " ")
	want := `podman --root /r run --rm --replace --pod pod --name pod-echo --ulimit nofile=4096:4096 --entrypoint ["python3","main.py"] --env A=1 --env B=2 --volume /state/logs:/logs localhost/echo:1 Bob`
	if got != want {
		t.Errorf("\n got %s\nwant %s", got, want)
	}
}

func TestNativeEnv_dropsOurOwnSettings(t *testing.T) {
	got := nativeEnv([]string{"PATH=/bin", "MODELSERVE_PORT=1", "MODELSERVE_ORT_LIB=/lib/ort.so", "HOME=/root"}, map[string]string{"MODELSERVE_WORKERS": "2"})
	want := []string{"PATH=/bin", "MODELSERVE_ORT_LIB=/lib/ort.so", "HOME=/root", "MODELSERVE_WORKERS=2"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%v", got)
	}
}

func TestPrepare_otherImagesNeedPodman(t *testing.T) {
	p, err := spec.Parse("s.yaml", []byte("spec:\n  containers:\n  - name: echo\n    image: localhost/echo:1\n"))
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Name: "echo", Spec: p.Spec, StateDir: t.TempDir(), Podman: []string{"no-such-podman-here"}}
	o.defaults()
	_, _, err = prepare(t.Context(), o, ServiceDir(o.StateDir, "echo"), true)
	if err == nil || !strings.Contains(err.Error(), "echo (localhost/echo:1) not modelserve images: running them needs podman, which is not installed") {
		t.Errorf("%v", err)
	}
}

func TestProbeURL_httpsForTLSContainers(t *testing.T) {
	for _, tt := range []struct {
		auth spec.AuthSecrets
		want string
	}{
		{spec.AuthSecrets{}, "http://127.0.0.1:9000/healthcheck"},
		{spec.AuthSecrets{Tokens: "t"}, "http://127.0.0.1:9000/healthcheck"},
		{spec.AuthSecrets{TLS: "iris-tls"}, "https://127.0.0.1:9000/healthcheck"},
	} {
		s, err := spec.ForModel(spec.ModelService{Model: "iris:1", Image: "localhost/iris:1", Auth: tt.auth})
		if err != nil {
			t.Fatal(err)
		}
		if got := probeURL(s.Containers[0], 9000); got != tt.want {
			t.Errorf("%+v: probe %s, want %s", tt.auth, got, tt.want)
		}
		if tls := tt.auth.TLS != ""; (s.Endpoints[0].Protocol == spec.ProtocolHTTPS) != tls {
			t.Errorf("%+v: endpoint protocol %s", tt.auth, s.Endpoints[0].Protocol)
		}
	}
}
