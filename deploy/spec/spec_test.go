package spec

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseQuantity(t *testing.T) {
	for _, tc := range []struct {
		in    string
		milli int64
		err   string
	}{
		{in: "4096", milli: 4096000},
		{in: "4Ki", milli: 4096000},
		{in: "1Mi", milli: 1048576000},
		{in: "48Gi", milli: 48 << 30 * 1000},
		{in: "4k", milli: 4000000},
		{in: "2M", milli: 2e9},
		{in: "2G", milli: 2e12},
		{in: "500m", milli: 500},
		{in: "0.5", milli: 500},
		{in: "1.5Gi", milli: 1536 << 20 * 1000},
		{in: "2.5", milli: 2500},
		{in: "0.0001", err: "finer than a thousandth"},
		{in: "1Ti", err: "not a quantity"},
		{in: "-1", err: "not a quantity"},
		{in: "1e3", err: "not a quantity"},
		{in: "Gi", err: "not a quantity"},
		{in: "", err: "not a quantity"},
		{in: "10000000000G", err: "too large"},
		{in: " 2Gi ", milli: 2 << 30 * 1000},
		{in: ".5", milli: 500},
		{in: "1/2", err: "not a quantity"},
		{in: "0x10Gi", err: "not a quantity"},
		{in: "0b11", err: "not a quantity"},
		{in: strings.Repeat("9", 100), err: "not a quantity"},
	} {
		q, err := ParseQuantity(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseQuantity(%q) = %v, %v; want an error with %q", tc.in, q.Milli(), err, tc.err)
			}
			continue
		}
		if err != nil || q.Milli() != tc.milli || q.String() != strings.TrimSpace(tc.in) {
			t.Errorf("ParseQuantity(%q) = %d (%q), %v; want %d", tc.in, q.Milli(), q.String(), err, tc.milli)
		}
	}
}

// ok is a minimal valid spec; rules below change one thing at a time.
const ok = `spec:
  containers:
  - name: main
    image: repo/img:1
`

// TestParse_rules has, for every rule of the reference, a spec that breaks
// it (with the line and words the error must have) and one that keeps it.
func TestParse_rules(t *testing.T) {
	for _, tc := range []struct {
		rule      string
		bad, good string
		line      int
		want      string
		count     int // problems the bad spec has; 0 means 1
	}{
		{rule: "spec is required", bad: "containers: []\n", good: ok, line: 1, want: `"spec" is missing`},
		{rule: "containers are required", bad: "spec:\n  endpoints: []\n", good: ok, line: 2, want: "containers is required"},
		{rule: "at least one container", bad: "spec:\n  containers: []\n", good: ok, line: 2, want: "at least one container"},
		{rule: "unknown top-level field", bad: ok + "  compute: big\n", good: ok, line: 5, want: `unknown field "compute"`},
		{rule: "unknown container field", bad: ok + "    imagePullPolicy: Always\n", good: ok, line: 5, want: `unknown field "imagePullPolicy"`},
		{rule: "container name required", bad: "spec:\n  containers:\n  - image: a\n", good: ok, line: 3, want: "name is required"},
		{rule: "image required", bad: "spec:\n  containers:\n  - name: a\n", good: ok, line: 3, want: "image is required"},
		{rule: "name at most 63 characters",
			bad:  "spec:\n  containers:\n  - name: " + strings.Repeat("a", 64) + "\n    image: i\n",
			good: "spec:\n  containers:\n  - name: " + strings.Repeat("a", 63) + "\n    image: i\n", line: 3, want: "the limit is 63"},
		{rule: "name lowercase", bad: "spec:\n  containers:\n  - name: Main\n    image: i\n", good: ok, line: 3, want: "lowercase"},
		{rule: "name no underscore", bad: "spec:\n  containers:\n  - name: my_app\n    image: i\n", good: "spec:\n  containers:\n  - name: my-app\n    image: i\n", line: 3, want: "lowercase"},
		{rule: "name starts with a letter", bad: "spec:\n  containers:\n  - name: 1app\n    image: i\n", good: "spec:\n  containers:\n  - name: app1\n    image: i\n", line: 3, want: "start with a letter"},
		{rule: "nesting at most 64 levels",
			bad:  ok + "    env:\n      A: " + strings.Repeat("[", MaxDepth) + strings.Repeat("]", MaxDepth) + "\n",
			good: ok, line: 6, want: "more than 64 levels deep"},
		{rule: "aliases expand to a bounded tree", bad: aliasBomb(6) + ok, good: ok, line: 5, want: "more than 100000 values"},
		{rule: "at most a megabyte", bad: ok + "#" + strings.Repeat("x", MaxBytes) + "\n", good: ok + "#" + strings.Repeat("x", 1000) + "\n",
			want: "a spec may be at most 1048576"},
		{rule: "name ends with letter or digit", bad: "spec:\n  containers:\n  - name: app-\n    image: i\n", good: "spec:\n  containers:\n  - name: app-2\n    image: i\n", line: 3, want: "end with a letter or digit"},
		{rule: "endpoint name rule", bad: ok + "  endpoints:\n  - name: Api\n    port: 80\n", good: ok + "  endpoints:\n  - name: api\n    port: 80\n", line: 6, want: "lowercase"},
		{rule: "volume name rule", bad: ok + "  volumes:\n  - name: -v\n    source: local\n", good: ok + "  volumes:\n  - name: v\n    source: local\n", line: 6, want: "start with a letter"},
		{rule: "container names unique", bad: ok + "  - name: main\n    image: b\n", good: ok + "  - name: side\n    image: b\n", line: 5, want: "already used on line 3"},
		{rule: "command is a list", bad: ok + "    command: python main.py\n", good: ok + "    command: [python, main.py]\n", line: 5, want: "list of strings"},
		{rule: "env is a mapping", bad: ok + "    env:\n    - A=1\n", good: ok + "    env:\n      A: 1\n", line: 6, want: "mapping of NAME: value"},
		{rule: "env names", bad: ok + "    env:\n      1A: x\n", good: ok + "    env:\n      A1: x\n", line: 6, want: "not an environment variable name"},
		{rule: "readiness probe port", bad: ok + "    readinessProbe:\n      port: 70000\n      path: /h\n", good: ok + "    readinessProbe:\n      port: 8080\n      path: /h\n", line: 6, want: "outside 1-65535"},
		{rule: "readiness probe path", bad: ok + "    readinessProbe:\n      port: 8080\n", good: ok + "    readinessProbe:\n      port: 8080\n      path: /healthcheck\n", line: 6, want: "path is required"},
		{rule: "readiness probe path absolute", bad: ok + "    readinessProbe:\n      port: 8080\n      path: health\n", good: ok + "    readinessProbe:\n      port: 8080\n      path: /health\n", line: 7, want: "must start with /"},
		{rule: "GPU request needs a limit",
			bad:  ok + "    resources:\n      requests:\n        nvidia.com/gpu: 1\n",
			good: ok + "    resources:\n      requests:\n        nvidia.com/gpu: 1\n      limits:\n        nvidia.com/gpu: 1\n", line: 5, want: "needs a limit"},
		{rule: "GPU request equals limit",
			bad:  ok + "    resources:\n      requests: {nvidia.com/gpu: 1}\n      limits: {nvidia.com/gpu: 2}\n",
			good: ok + "    resources:\n      requests: {nvidia.com/gpu: 2}\n      limits: {nvidia.com/gpu: 2}\n", line: 5, want: "must be equal"},
		{rule: "GPU limit needs a request",
			bad:  ok + "    resources:\n      limits: {nvidia.com/gpu: 1}\n",
			good: ok + "    resources:\n      limits: {memory: 1Gi}\n", line: 5, want: "needs a request"},
		{rule: "whole GPUs", bad: ok + "    resources:\n      requests: {nvidia.com/gpu: 0.5}\n      limits: {nvidia.com/gpu: 0.5}\n",
			good: ok + "    resources:\n      requests: {nvidia.com/gpu: 1}\n      limits: {nvidia.com/gpu: 1}\n", line: 6, want: "whole number of GPUs", count: 2},
		{rule: "memory units", bad: ok + "    resources:\n      requests: {memory: 2GB}\n", good: ok + "    resources:\n      requests: {memory: 2G}\n", line: 6, want: "not a quantity"},
		{rule: "whole bytes", bad: ok + "    resources:\n      requests: {memory: 500m}\n", good: ok + "    resources:\n      requests: {memory: 500M}\n", line: 6, want: "whole number of bytes"},
		{rule: "fractional CPU", bad: ok + "    resources:\n      requests: {cpu: half}\n", good: ok + "    resources:\n      requests: {cpu: 500m}\n      limits: {cpu: 0.5}\n", line: 6, want: "not a quantity"},
		{rule: "request within limit", bad: ok + "    resources:\n      requests: {memory: 4G}\n      limits: {memory: 2G}\n",
			good: ok + "    resources:\n      requests: {memory: 2G}\n      limits: {memory: 2Gi}\n", line: 5, want: "above its limit"},
		{rule: "unknown resource", bad: ok + "    resources:\n      requests: {gpu: 1}\n", good: ok + "    resources:\n      requests: {nvidia.com/gpu: 1}\n      limits: {nvidia.com/gpu: 1}\n", line: 6, want: `unknown field "gpu"`},
		{rule: "memory volume needs a size", bad: ok + "  volumes:\n  - name: shm\n    source: memory\n", good: ok + "  volumes:\n  - name: shm\n    source: memory\n    size: 2Gi\n", line: 6, want: "needs a size"},
		{rule: "size only for memory", bad: ok + "  volumes:\n  - name: v\n    source: local\n    size: 1G\n", good: ok + "  volumes:\n  - name: v\n    source: local\n", line: 8, want: "only for memory volumes"},
		{rule: "volume source", bad: ok + "  volumes:\n  - name: v\n    source: disk\n", good: ok + "  volumes:\n  - name: v\n    source: local\n", line: 7, want: "not a volume source"},
		{rule: "stage folder", bad: ok + "  volumes:\n  - name: v\n    source: \"@st//x\"\n", good: ok + "  volumes:\n  - name: v\n    source: \"@db.sch.st/models/v1\"\n", line: 7, want: "not a stage or stage folder"},
		{rule: "stage folder stays in its stage", bad: ok + "  volumes:\n  - name: v\n    source: \"@st/models/../../../etc\"\n", good: ok + "  volumes:\n  - name: v\n    source: \"@st/models/v1\"\n", line: 7, want: `without ".."`},
		{rule: "stageConfig folder stays in its stage", bad: ok + "  volumes:\n  - name: v\n    source: stage\n    stageConfig:\n      name: \"@st/..\"\n",
			good: ok + "  volumes:\n  - name: v\n    source: stage\n    stageConfig:\n      name: \"@st/a..b\"\n", line: 9, want: `without ".."`},
		{rule: "stage needs stageConfig", bad: ok + "  volumes:\n  - name: v\n    source: stage\n", good: ok + "  volumes:\n  - name: v\n    source: stage\n    stageConfig:\n      name: \"@st\"\n", line: 6, want: "needs stageConfig"},
		{rule: "stageConfig only with stage", bad: ok + "  volumes:\n  - name: v\n    source: local\n    stageConfig:\n      name: \"@st\"\n",
			good: ok + "  volumes:\n  - name: v\n    source: stage\n    stageConfig:\n      name: \"@st\"\n", line: 8, want: "only with source: stage"},
		{rule: "stageConfig name", bad: ok + "  volumes:\n  - name: v\n    source: stage\n    stageConfig:\n      name: st\n",
			good: ok + "  volumes:\n  - name: v\n    source: stage\n    stageConfig:\n      name: \"@st/dir\"\n      uid: 1000\n", line: 9, want: "not a stage"},
		{rule: "uid only on stage volumes", bad: ok + "  volumes:\n  - name: v\n    source: local\n    uid: 1000\n", good: ok + "  volumes:\n  - name: v\n    source: \"@st\"\n    uid: 1000\n", line: 8, want: "uid is only for stage volumes"},
		{rule: "gid only on stage volumes", bad: ok + "  volumes:\n  - name: v\n    source: memory\n    size: 1Gi\n    gid: 1000\n", good: ok + "  volumes:\n  - name: v\n    source: \"@st\"\n    gid: 1000\n", line: 9, want: "gid is only for stage volumes"},
		{rule: "mount names a volume", bad: ok + "    volumeMounts:\n    - name: data\n      mountPath: /data\n",
			good: ok + "    volumeMounts:\n    - name: data\n      mountPath: /data\n  volumes:\n  - name: data\n    source: local\n", line: 6, want: `volume "data" is not declared`},
		{rule: "mount path absolute", bad: ok + "    volumeMounts:\n    - name: d\n      mountPath: data\n  volumes:\n  - name: d\n    source: local\n",
			good: ok + "    volumeMounts:\n    - name: d\n      mountPath: /data\n  volumes:\n  - name: d\n    source: local\n", line: 7, want: "absolute path"},
		{rule: "secret needs envVarName or directoryPath", bad: ok + "    secrets:\n    - snowflakeSecret: cred\n",
			good: ok + "    secrets:\n    - snowflakeSecret: cred\n      directoryPath: /secrets\n", line: 6, want: "needs envVarName"},
		{rule: "secret not both", bad: ok + "    secrets:\n    - snowflakeSecret: cred\n      envVarName: PW\n      directoryPath: /s\n",
			good: ok + "    secrets:\n    - snowflakeSecret: cred\n      envVarName: PW\n", line: 6, want: "not both"},
		{rule: "secretKeyRef only with envVarName", bad: ok + "    secrets:\n    - snowflakeSecret: cred\n      secretKeyRef: password\n      directoryPath: /s\n",
			good: ok + "    secrets:\n    - snowflakeSecret: {objectName: cred}\n      secretKeyRef: password\n      envVarName: PW\n", line: 7, want: "only with envVarName"},
		{rule: "secret names the object", bad: ok + "    secrets:\n    - envVarName: PW\n", good: ok + "    secrets:\n    - snowflakeSecret: cred\n      envVarName: PW\n", line: 6, want: "snowflakeSecret is required"},
		{rule: "endpoint port required", bad: ok + "  endpoints:\n  - name: api\n", good: ok + "  endpoints:\n  - name: api\n    port: 8080\n", line: 6, want: "port is required"},
		{rule: "endpoint protocol", bad: ok + "  endpoints:\n  - name: api\n    port: 80\n    protocol: UDP\n", good: ok + "  endpoints:\n  - name: api\n    port: 80\n    protocol: TCP\n", line: 8, want: "TCP, HTTP or HTTPS"},
		{rule: "public endpoint is HTTP(S)", bad: ok + "  endpoints:\n  - name: api\n    port: 80\n    public: true\n    protocol: TCP\n",
			good: ok + "  endpoints:\n  - name: api\n    port: 80\n    public: true\n    protocol: HTTPS\n", line: 6, want: "must be HTTP or HTTPS"},
		{rule: "public is a boolean", bad: ok + "  endpoints:\n  - name: api\n    port: 80\n    public: yes please\n", good: ok + "  endpoints:\n  - name: api\n    port: 80\n    public: false\n", line: 8, want: "true or false"},
		{rule: "endpoint names unique", bad: ok + "  endpoints:\n  - name: api\n    port: 80\n  - name: api\n    port: 81\n", good: ok + "  endpoints:\n  - name: api\n    port: 80\n  - name: admin\n    port: 81\n", line: 8, want: "already used on line 6"},
		{rule: "log level", bad: ok + "  logExporters:\n    eventTableConfig:\n      logLevel: DEBUG\n", good: ok + "  logExporters:\n    eventTableConfig:\n      logLevel: NONE\n", line: 7, want: "INFO, ERROR or NONE"},
		{rule: "repeated key", bad: ok + "    image: other\n", good: ok, line: 5, want: "given twice"},
		{rule: "not YAML", bad: "spec: [\n", good: ok, want: "not YAML"},
	} {
		t.Run(tc.rule, func(t *testing.T) {
			if _, err := Parse("good.yaml", []byte(tc.good)); err != nil {
				t.Fatalf("the passing spec fails:\n%v\n%s", err, tc.good)
			}
			_, err := Parse("bad.yaml", []byte(tc.bad))
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("the failing spec passes (err %v):\n%s", err, tc.bad)
			}
			if want := max(tc.count, 1); len(errs) != want {
				t.Errorf("want %d problem(s), got %d:\n%v", want, len(errs), err)
			}
			if !strings.Contains(errs[0].Msg, tc.want) || errs[0].Line != tc.line {
				t.Errorf("got %q; want line %d and %q", errs[0].Error(), tc.line, tc.want)
			}
		})
	}
}

// TestParse_reportsEveryError: a spec with ten mistakes gives ten problems,
// in line order.
func TestParse_reportsEveryError(t *testing.T) {
	bad := `spec:
  containers:
  - name: Main_App
    image: repo/img:1
    resources:
      requests: {nvidia.com/gpu: 1, memory: 2GB}
    volumeMounts:
    - name: missing
      mountPath: /data
    secrets:
    - snowflakeSecret: cred
      secretKeyRef: password
      directoryPath: /s
  endpoints:
  - name: api
    port: 99999
    public: true
    protocol: TCP
  volumes:
  - name: shm
    source: memory
  - name: cache
    source: local
    uid: 1000
  logExporters:
    eventTableConfig:
      logLevel: verbose
`
	_, err := Parse("ten.yaml", []byte(bad))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("no errors: %v", err)
	}
	if len(errs) != 10 {
		t.Fatalf("got %d problems, want 10:\n%v", len(errs), err)
	}
	for i := 1; i < len(errs); i++ {
		if errs[i].Line < errs[i-1].Line {
			t.Errorf("problems out of line order:\n%v", err)
		}
	}
	if !strings.HasPrefix(errs[0].Error(), "ten.yaml:3:11: spec.containers[0].name: ") {
		t.Errorf("first problem: %q", errs[0].Error())
	}
}

// TestParse_seedSpecs: every spec in the seed documents validates; each
// file in testdata/seeds says where in ../shared/seeds it comes from.
func TestParse_seedSpecs(t *testing.T) {
	files, err := filepath.Glob("testdata/seeds/*.yaml")
	if err != nil || len(files) < 17 {
		t.Fatalf("seed specs: %v, %v", files, err)
	}
	warned := map[string]string{
		"000-study-notes-llm.yaml":      "target is not in the reference",
		"003-endpoints-tutorial-1.yaml": `"container" is read as "containers"`,
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		p, err := Parse(f, data)
		if err != nil {
			t.Errorf("%s:\n%v", f, err)
			continue
		}
		base := filepath.Base(f)
		if w := warned[base]; w != "" {
			if len(p.Warnings) == 0 || !strings.Contains(p.Warnings[0].Msg, w) {
				t.Errorf("%s: warnings %v, want one with %q", f, p.Warnings, w)
			}
		} else if len(p.Warnings) > 0 {
			t.Errorf("%s: unexpected warnings %v", f, p.Warnings)
		}
		// The normalized form parses again, to the same spec, with no warnings.
		out, err := p.Spec.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		again, err := Parse(f+" (normalized)", out)
		if err != nil {
			t.Errorf("%s: normalized spec fails:\n%v\n%s", f, err, out)
			continue
		}
		if len(again.Warnings) > 0 {
			t.Errorf("%s: normalized spec warns: %v", f, again.Warnings)
		}
		if !reflect.DeepEqual(clearLines(*again.Spec), clearLines(*p.Spec)) {
			t.Errorf("%s: normalized spec differs:\n%s", f, out)
		}
	}
}

func clearLines(s Spec) Spec {
	for i := range s.Containers {
		c := &s.Containers[i]
		c.Line = 0
		for j := range c.VolumeMounts {
			c.VolumeMounts[j].Line = 0
		}
		for j := range c.Secrets {
			c.Secrets[j].Line = 0
		}
		if c.Resources != nil {
			c.Resources.Line = 0
		}
	}
	for i := range s.Endpoints {
		s.Endpoints[i].Line = 0
	}
	for i := range s.Volumes {
		s.Volumes[i].Line = 0
	}
	return s
}

func TestParse_normalizes(t *testing.T) {
	p, err := Parse("n.yaml", []byte(`spec:
  endpoint:
  - name: api
    port: 8080
    protocol: http
  container:
  - name: app
    image: i
    env: {PORT: 8080, DEBUG: }
  volumes:
  - name: st
    source: "@db.sch.models/v1"
    target: /models
  logExporters:
    eventTableConfig: {logLevel: error}
`))
	if err != nil {
		t.Fatal(err)
	}
	s := p.Spec
	if s.Endpoints[0].Protocol != "HTTP" || s.LogLevel() != "ERROR" || s.Containers[0].Env["PORT"] != "8080" || s.Containers[0].Env["DEBUG"] != "" {
		t.Errorf("normalized: %+v", s)
	}
	if m := s.Containers[0].VolumeMounts; len(m) != 1 || m[0] != (VolumeMount{Name: "st", MountPath: "/models", Line: 13}) {
		t.Errorf("target became %+v", m)
	}
	if name, dir := s.Volumes[0].Stage(); name != "db.sch.models" || dir != "v1" {
		t.Errorf("stage %q %q", name, dir)
	}
	if len(p.Warnings) != 3 {
		t.Errorf("warnings: %v", p.Warnings)
	}
}

// aliasBomb is a small spec whose aliases stand for 10^levels values
// (YAML's "billion laughs").
func aliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("x0: &a0 [v, v, v, v, v, v, v, v, v, v]\n")
	for i := 1; i < levels; i++ {
		fmt.Fprintf(&b, "x%d: &a%d [%s]\n", i, i, strings.TrimSuffix(strings.Repeat(fmt.Sprintf("*a%d, ", i-1), 10), ", "))
	}
	return b.String()
}
