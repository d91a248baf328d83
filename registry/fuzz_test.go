package registry

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modelserve/modelserve/model"
)

// FuzzParseRef takes references as users type them (NAME[:VERSION]): what
// is accepted names one folder under the registry's models, never a path
// that climbs or a hidden file.
func FuzzParseRef(f *testing.F) {
	for _, s := range []string{"iris", "iris:3", "my-model_v2:2024.1", "../etc:1", "iris:a/b", "iris:", ":", "a:b:c", ".hidden:1", "x:..", "é:1"} {
		f.Add(s)
	}
	const root = "/registry/models"
	f.Fuzz(func(t *testing.T, ref string) {
		name, version, err := ParseRef(ref)
		if err != nil {
			return
		}
		for _, part := range []string{name, version} {
			if part == "" {
				continue
			}
			p := filepath.Join(root, part)
			if filepath.Dir(p) != root || filepath.Base(p) != part || strings.HasPrefix(part, ".") {
				t.Fatalf("%q gives %q, which is not one folder under %s", ref, part, root)
			}
		}
		for kind := model.ModelName; kind <= model.KeyName; kind++ {
			if model.CheckName(kind, name) == nil && (strings.ContainsAny(name, "/\\\x00 ") || name == "." || name == "..") {
				t.Fatalf("%s %q accepted", kind, name)
			}
		}
	})
}

// FuzzReadAliases reads alias files as anyone with write access to the
// registry could leave them: what is accepted maps names a command could
// have written to versions a reference could name.
func FuzzReadAliases(f *testing.F) {
	for _, s := range []string{`{"prod": "3"}`, `{}`, `{"../x": "1"}`, `{"a": "../../etc"}`, `[]`, `{"a": 1}`, `null`, `{"a":"1","a":"2"}`} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(dir, "aliases.json")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		aliases, err := readAliases(path)
		if err != nil {
			return
		}
		for a, v := range aliases {
			if model.CheckName(model.VersionName, a) != nil || model.CheckName(model.VersionName, v) != nil {
				t.Fatalf("accepted %q → %q", a, v)
			}
		}
	})
}
