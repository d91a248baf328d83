package registry

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/internal/testenv"
	"github.com/modelserve/modelserve/model"
)

func openTemp(t *testing.T) *Registry {
	t.Helper()
	reg, err := Open(t.TempDir(), testenv.Runtime(t))
	if err != nil {
		t.Fatal(err)
	}
	return reg
}

func logIris(t *testing.T, reg *Registry, version string) Version {
	t.Helper()
	v, err := reg.Log(context.Background(), LogRequest{
		Name: "iris", Version: version, File: testenv.Model(t, "iris"),
		Functions: []model.Function{{Name: "predict", Outputs: []string{"label"}}, {Name: "predict_proba", Outputs: []string{"probabilities"}}},
		Features:  map[string][]string{"": {"sepal_length", "sepal_width", "petal_length", "petal_width"}},
		Comment:   "test",
	})
	if err != nil {
		t.Fatalf("log iris:%s: %v", version, err)
	}
	return v
}

func TestLog_readsSignatureFromTheGraph(t *testing.T) {
	reg := openTemp(t)
	v := logIris(t, reg, "1")
	got, err := reg.Get("iris", "1")
	if err != nil {
		t.Fatal(err)
	}
	if got.SHA256 != v.SHA256 || len(got.SHA256) != 64 || got.Size == 0 || got.Created.IsZero() || got.Comment != "test" {
		t.Errorf("manifest = %+v", got)
	}
	want := []model.Spec{{Name: "features", DType: model.Float32, Shape: model.Shape{-1, 4}}}
	if !reflect.DeepEqual(got.Signature.Inputs, want) {
		t.Errorf("inputs = %+v", got.Signature.Inputs)
	}
	if len(got.Signature.Outputs) != 2 || got.Signature.Outputs[1].Name != "probabilities" {
		t.Errorf("outputs = %+v", got.Signature.Outputs)
	}
	if got.Signature.Features["features"][0] != "sepal_length" {
		t.Errorf("features = %v", got.Signature.Features)
	}
	if got.Metadata["classes"] != "setosa,versicolor,virginica" {
		t.Errorf("metadata = %v", got.Metadata)
	}
	if err := reg.Verify(context.Background(), got); err != nil {
		t.Errorf("verify a fresh version: %v", err)
	}
}

func TestLog_defaultFunctionReturnsEveryOutput(t *testing.T) {
	reg := openTemp(t)
	v, err := reg.Log(context.Background(), LogRequest{Name: "strings", Version: "1", File: testenv.Model(t, "strings")})
	if err != nil {
		t.Fatal(err)
	}
	want := []model.Function{{Name: "predict", Outputs: []string{"normalized", "code", "score"}}}
	if !reflect.DeepEqual(v.Signature.Functions, want) {
		t.Errorf("functions = %+v", v.Signature.Functions)
	}
}

func TestLog_refusesWhatCannotBeServed(t *testing.T) {
	garbage := filepath.Join(t.TempDir(), "garbage.onnx")
	os.WriteFile(garbage, []byte("this is not a protobuf"), 0o644)
	truncated := filepath.Join(t.TempDir(), "truncated.onnx")
	b, _ := os.ReadFile(testenv.Model(t, "mlp"))
	os.WriteFile(truncated, b[:len(b)/2], 0o644)

	tests := []struct {
		name string
		req  LogRequest
		want string
	}{
		{"not onnx", LogRequest{File: garbage}, "garbage.onnx: not a model ONNX Runtime"},
		{"truncated", LogRequest{File: truncated}, "truncated.onnx: not a model ONNX Runtime"},
		{"missing file", LogRequest{File: filepath.Join(t.TempDir(), "none.onnx")}, "no such file"},
		{"unknown output", LogRequest{File: testenv.Model(t, "iris"), Functions: []model.Function{{Name: "predict", Outputs: []string{"score"}}}}, `returns "score"`},
		{"features of no matrix", LogRequest{File: testenv.Model(t, "types"), Features: map[string][]string{"": {"a"}}}, "0 [batch, F] numeric inputs"},
		{"bad name", LogRequest{File: testenv.Model(t, "iris"), Name: "../x"}, "model name"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reg := openTemp(t)
			if tt.req.Name == "" {
				tt.req.Name = "m"
			}
			tt.req.Version = "1"
			_, err := reg.Log(context.Background(), tt.req)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Log() = %v, want an error containing %q", err, tt.want)
			}
			if vs, _ := reg.List(); len(vs) != 0 {
				t.Errorf("a refused log left %d versions", len(vs))
			}
			if left, _ := os.ReadDir(filepath.Join(reg.Root(), stagingDir)); len(left) != 0 {
				t.Errorf("a refused log left staging folders: %v", left)
			}
		})
	}
}

func TestLog_againIsANoOpOnlyForTheSameModel(t *testing.T) {
	reg := openTemp(t)
	first := logIris(t, reg, "1")
	again := logIris(t, reg, "1")
	if again.Created != first.Created {
		t.Errorf("logging the same model again rewrote it")
	}
	_, err := reg.Log(context.Background(), LogRequest{Name: "iris", Version: "1", File: testenv.Model(t, "mlp")})
	if !errors.Is(err, ErrExists) {
		t.Errorf("other bytes under the same version: %v", err)
	}
	_, err = reg.Log(context.Background(), LogRequest{Name: "iris", Version: "1", File: testenv.Model(t, "iris")})
	if !errors.Is(err, ErrExists) {
		t.Errorf("same bytes, other functions: %v", err)
	}
}

func TestLog_canceledLeavesNothing(t *testing.T) {
	reg := openTemp(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := reg.Log(ctx, LogRequest{Name: "enc", Version: "1", File: testenv.Model(t, "encoder")}); !errors.Is(err, context.Canceled) {
		t.Fatalf("Log() = %v, want context.Canceled", err)
	}
	if _, err := reg.Get("enc", "1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after a canceled log = %v", err)
	}
	if left, _ := os.ReadDir(filepath.Join(reg.Root(), stagingDir)); len(left) != 0 {
		t.Errorf("staging not cleaned: %v", left)
	}
}

func TestList_ignoresWhatACrashedLogLeft(t *testing.T) {
	reg := openTemp(t)
	logIris(t, reg, "1")
	// A crash before the commit rename leaves a complete staging folder.
	crashed := filepath.Join(reg.Root(), stagingDir, "iris-2-123")
	os.MkdirAll(crashed, 0o755)
	b, _ := os.ReadFile(filepath.Join(reg.Root(), modelsDir, "iris", "1", manifestFile))
	os.WriteFile(filepath.Join(crashed, manifestFile), b, 0o644)
	vs, err := reg.List()
	if err != nil || len(vs) != 1 || vs[0].Version != "1" {
		t.Fatalf("List() = %v, %v; want only iris:1", vs, err)
	}
}

func TestGet_latestIsTheHighestVersion(t *testing.T) {
	reg := openTemp(t)
	for _, v := range []string{"9", "10", "2"} {
		logIris(t, reg, v)
	}
	v, err := reg.Get("iris", "")
	if err != nil || v.Version != "10" {
		t.Fatalf("latest = %v, %v; want 10", v.Version, err)
	}
	vs, _ := reg.List()
	var order []string
	for _, v := range vs {
		order = append(order, v.Version)
	}
	if !reflect.DeepEqual(order, []string{"2", "9", "10"}) {
		t.Errorf("list order = %v", order)
	}
	if _, err := reg.Get("nope", ""); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown model: %v", err)
	}
}

func TestDelete_refusedWhileAServiceHoldsTheVersion(t *testing.T) {
	reg := openTemp(t)
	v := logIris(t, reg, "1")
	release, err := reg.Acquire(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := reg.Delete("iris", "1"); !errors.Is(err, ErrInUse) {
		t.Fatalf("Delete while held = %v, want ErrInUse", err)
	}
	release()
	// A delete goes through a registry opened to read, as the CLI does.
	reader, _ := Open(reg.Root(), nil)
	if err := reader.Delete("iris", "1"); err != nil {
		t.Fatalf("Delete after release: %v", err)
	}
	if _, err := reg.Get("iris", "1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Get after delete = %v", err)
	}
	if _, err := os.Stat(filepath.Join(reg.Root(), modelsDir, "iris")); !os.IsNotExist(err) {
		t.Errorf("the model's folder outlived its last version: %v", err)
	}
	if _, err := reg.Acquire(v); !errors.Is(err, ErrNotFound) {
		t.Errorf("Acquire after delete = %v", err)
	}
}

func TestAcquire_aVersionWithoutALockFileGetsOne(t *testing.T) {
	reg := openTemp(t)
	v := logIris(t, reg, "1")
	os.Remove(filepath.Join(v.Dir, lockFile))
	release, err := reg.Acquire(v)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	if err := reg.Delete("iris", "1"); !errors.Is(err, ErrInUse) {
		t.Errorf("Delete while held = %v", err)
	}
}

func TestVerify_namesTheFileAndBothChecksums(t *testing.T) {
	reg := openTemp(t)
	v := logIris(t, reg, "1")
	os.Chmod(v.ModelPath(), 0o644)
	b, _ := os.ReadFile(v.ModelPath())
	b[len(b)/2] ^= 0xff
	os.WriteFile(v.ModelPath(), b, 0o644)
	err := reg.Verify(context.Background(), v)
	if !errors.Is(err, ErrCorrupt) {
		t.Fatalf("Verify() = %v, want ErrCorrupt", err)
	}
	for _, want := range []string{v.ModelPath(), v.SHA256, "iris:1"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not mention %q", err, want)
		}
	}
}

func TestOpen_readingWritesNothing(t *testing.T) {
	root := filepath.Join(t.TempDir(), "registry")
	reg, err := Open(root, nil)
	if err != nil {
		t.Fatal(err)
	}
	if vs, err := reg.List(); err != nil || len(vs) != 0 {
		t.Errorf("List() of an empty registry = %v, %v", vs, err)
	}
	if _, err := os.Stat(root); !os.IsNotExist(err) {
		t.Errorf("a reading Open created %s", root)
	}
	if _, err := reg.Log(context.Background(), LogRequest{Name: "iris", Version: "1", File: testenv.Model(t, "iris")}); err == nil {
		t.Error("a registry opened to read accepted a log")
	}
}

func TestCompareVersions_natural(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"9", "10", -1},
		{"v2", "v10", -1},
		{"1.2", "1.10", -1},
		{"2024-01-02", "2024-01-10", -1},
		{"a", "b", -1},
		{"1", "1", 0},
		{"1", "1a", -1},
		{"10", "9", 1},
	}
	for _, tt := range tests {
		if got := compareVersions(tt.a, tt.b); got != tt.want {
			t.Errorf("compareVersions(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestParseRef(t *testing.T) {
	tests := []struct {
		ref, name, version string
		ok                 bool
	}{
		{"iris", "iris", "", true},
		{"iris:3", "iris", "3", true},
		{"my-model_v2:2024.1", "my-model_v2", "2024.1", true},
		{"", "", "", false},
		{"iris:", "iris", "", true},
		{"../etc:1", "", "", false},
		{"iris:a/b", "", "", false},
	}
	for _, tt := range tests {
		name, version, err := ParseRef(tt.ref)
		if (err == nil) != tt.ok || name != tt.name || version != tt.version {
			t.Errorf("ParseRef(%q) = %q, %q, %v", tt.ref, name, version, err)
		}
	}
}

// TestRegistry_followsNoLinkOutOfItsRoot: links put into a registry by
// hand (a model folder, a version, a model file) are refused by every
// command, and Delete removes nothing outside the root.
func TestRegistry_followsNoLinkOutOfItsRoot(t *testing.T) {
	outside := t.TempDir()
	tests := []struct {
		name string
		link func(t *testing.T, root string) // turns part of root into a link to outside
	}{
		{"a model folder", func(t *testing.T, root string) {
			moveAndLink(t, filepath.Join(root, "models", "iris"), filepath.Join(outside, "iris"))
		}},
		{"a version folder", func(t *testing.T, root string) {
			moveAndLink(t, filepath.Join(root, "models", "iris", "1"), filepath.Join(outside, "1"))
		}},
		{"the models folder", func(t *testing.T, root string) {
			moveAndLink(t, filepath.Join(root, "models"), filepath.Join(outside, "models"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			os.RemoveAll(outside)
			os.MkdirAll(outside, 0o755)
			reg := openTemp(t)
			v := logIris(t, reg, "1")
			tt.link(t, reg.Root())
			const want = "is a symbolic link"
			if _, err := reg.Get("iris", "1"); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Get = %v", err)
			}
			// A linked version is not listed at all.
			if _, err := reg.Get("iris", ""); err == nil || !strings.Contains(err.Error(), want) && !errors.Is(err, ErrNotFound) {
				t.Errorf("Get latest = %v", err)
			}
			if err := reg.Verify(context.Background(), v); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Verify = %v", err)
			}
			if _, err := reg.Acquire(v); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Acquire = %v", err)
			}
			if err := reg.Delete("iris", "1"); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Delete = %v", err)
			}
			if _, err := reg.Log(context.Background(), LogRequest{Name: "iris", Version: "1", File: testenv.Model(t, "iris")}); err == nil || !strings.Contains(err.Error(), want) {
				t.Errorf("Log through a link = %v", err)
			}
			var files int
			filepath.Walk(outside, func(string, os.FileInfo, error) error { files++; return nil })
			if files < 3 {
				t.Errorf("the files outside the registry are gone (%d left)", files)
			}
		})
	}
	t.Run("a model file", func(t *testing.T) {
		reg := openTemp(t)
		v := logIris(t, reg, "1")
		secret := filepath.Join(outside, "secret")
		os.WriteFile(secret, []byte("not yours"), 0o600)
		os.Remove(v.ModelPath())
		os.Symlink(secret, v.ModelPath())
		if err := reg.Verify(context.Background(), v); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
			t.Errorf("Verify = %v", err)
		}
	})
	t.Run("a manifest naming another file", func(t *testing.T) {
		reg := openTemp(t)
		v := logIris(t, reg, "1")
		path := filepath.Join(v.Dir, "manifest.json")
		b, _ := os.ReadFile(path)
		os.Chmod(path, 0o644)
		os.WriteFile(path, []byte(strings.Replace(string(b), `"model.onnx"`, `"../../../../etc/passwd"`, 1)), 0o644)
		if _, err := reg.Get("iris", "1"); err == nil || !strings.Contains(err.Error(), "does not describe") {
			t.Errorf("Get = %v", err)
		}
	})
}

func moveAndLink(t *testing.T, path, to string) {
	t.Helper()
	if err := os.Rename(path, to); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(to, path); err != nil {
		t.Fatal(err)
	}
}

func TestAliases_nameAVersionAndMove(t *testing.T) {
	r := openTemp(t)
	for _, v := range []string{"1", "2"} {
		logIris(t, r, v)
	}
	if err := r.SetAlias("iris", "prod", "1"); err != nil {
		t.Fatal(err)
	}
	v, err := r.Get("iris", "prod")
	if err != nil || v.Version != "1" {
		t.Fatalf("iris:prod = %v, %v; want version 1", v.Version, err)
	}
	if err := r.SetAlias("iris", "prod", "2"); err != nil {
		t.Fatal(err)
	}
	if v, _ := r.Get("iris", "prod"); v.Version != "2" {
		t.Fatalf("after the move iris:prod = %s, want 2", v.Version)
	}
	if a, _ := r.Aliases("iris"); len(a) != 1 || a["prod"] != "2" {
		t.Errorf("aliases = %v", a)
	}
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"an alias to a version that is not there", r.SetAlias("iris", "prod", "9"), "not found"},
		{"an alias to an alias", r.SetAlias("iris", "staging", "prod"), "is an alias"},
		{"an alias named as a version", r.SetAlias("iris", "1", "2"), "already exists as a version"},
		{"an alias with a bad name", r.SetAlias("iris", "../x", "2"), "alias"},
		{"deleting the version an alias names", r.Delete("iris", "2"), "move or remove the alias first"},
		{"deleting through an alias", r.Delete("iris", "prod"), "is an alias"},
		{"removing an alias that is not there", r.RemoveAlias("iris", "staging"), "not found"},
	}
	for _, tt := range tests {
		if tt.err == nil || !strings.Contains(tt.err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error with %q", tt.name, tt.err, tt.want)
		}
	}
	if _, err := r.Log(context.Background(), LogRequest{Name: "iris", Version: "prod", File: testenv.Model(t, "iris")}); err == nil || !strings.Contains(err.Error(), "as an alias") {
		t.Errorf("logging a version named as an alias: %v", err)
	}
	if err := r.Delete("iris", "1"); err != nil {
		t.Errorf("deleting a version no alias names: %v", err)
	}
	if err := r.RemoveAlias("iris", "prod"); err != nil {
		t.Fatal(err)
	}
	if err := r.Delete("iris", "2"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(r.Root(), "models", "iris")); !os.IsNotExist(err) {
		t.Errorf("the model's folder outlived its last version: %v", err)
	}
}
