package kube

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"sigs.k8s.io/yaml"

	"github.com/modelserve/modelserve/internal/atomicfile"
)

// Encode writes one object as YAML, without the fields the API server
// fills in (status, creation time).
func Encode(obj runtime.Object) ([]byte, error) {
	data, err := json.Marshal(obj)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	delete(m, "status")
	prune(m)
	return yaml.Marshal(m)
}

// prune drops the null values (an unset creationTimestamp) the API types
// write.
func prune(v any) {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			if e == nil {
				delete(x, k)
				continue
			}
			prune(e)
		}
	case []any:
		for _, e := range x {
			prune(e)
		}
	}
}

// WriteStream writes the objects as one multi-document YAML stream.
func WriteStream(w io.Writer, objs []runtime.Object) error {
	var b bytes.Buffer
	for i, obj := range objs {
		doc, err := Encode(obj)
		if err != nil {
			return err
		}
		if i > 0 {
			b.WriteString("---\n")
		}
		b.Write(doc)
	}
	_, err := w.Write(b.Bytes())
	return err
}

// kustomization lists a directory's manifests for kubectl apply -k.
type kustomization struct {
	APIVersion string   `json:"apiVersion"`
	Kind       string   `json:"kind"`
	Resources  []string `json:"resources"`
}

// WriteDir writes one file per object, named for its kind and name, and a
// kustomization.yaml that lists them, and returns the files' paths.
func WriteDir(dir string, objs []runtime.Object) ([]string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	k := kustomization{APIVersion: "kustomize.config.k8s.io/v1beta1", Kind: "Kustomization"}
	var paths []string
	for _, obj := range objs {
		doc, err := Encode(obj)
		if err != nil {
			return nil, err
		}
		name := fileName(obj)
		if err := atomicfile.Write(filepath.Join(dir, name), 0o644, func(w io.Writer) error {
			_, err := w.Write(doc)
			return err
		}); err != nil {
			return nil, err
		}
		k.Resources = append(k.Resources, name)
		paths = append(paths, filepath.Join(dir, name))
	}
	doc, err := yaml.Marshal(k)
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "kustomization.yaml")
	if err := atomicfile.Write(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(doc)
		return err
	}); err != nil {
		return nil, err
	}
	return append(paths, path), nil
}

// fileName is "<kind>-<name>.yaml", lowercased.
func fileName(obj runtime.Object) string {
	kind := strings.ToLower(obj.GetObjectKind().GroupVersionKind().Kind)
	name := ""
	if m, ok := obj.(interface{ GetName() string }); ok {
		name = m.GetName()
	}
	return fmt.Sprintf("%s-%s.yaml", kind, name)
}
