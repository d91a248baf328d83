package build_test

import (
	"archive/tar"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"

	"github.com/modelserve/modelserve/build"
)

// writeFile writes a file on disk with the given time and permissions.
func writeFile(t *testing.T, path, content string, perm os.FileMode, mtime time.Time) string {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), perm); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
	return path
}

func digest(t *testing.T, l v1.Layer) v1.Hash {
	t.Helper()
	d, err := l.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func TestLayer_sameContentSameDigest(t *testing.T) {
	layer := func(dir string, mtime time.Time, perm os.FileMode, model string, order []int) v1.Layer {
		files := []build.File{
			{Path: "/opt/app/model.onnx", Mode: 0o444, Source: writeFile(t, filepath.Join(dir, "a", "m.onnx"), model, perm, mtime)},
			{Path: "/opt/app/bin/app", Mode: 0o755, Source: writeFile(t, filepath.Join(dir, "b", "app"), "binary", perm, mtime)},
			{Path: "/etc/app.conf", Mode: 0o644, Data: []byte("port=8080\n")},
		}
		var ordered []build.File
		for _, i := range order {
			ordered = append(ordered, files[i])
		}
		l, err := build.Layer(ordered)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
	first := digest(t, layer(t.TempDir(), time.Date(2001, 1, 1, 0, 0, 0, 0, time.UTC), 0o600, "weights", []int{0, 1, 2}))
	for _, tt := range []struct {
		name  string
		layer v1.Layer
		same  bool
	}{
		{"other folder, time, permissions and order", layer(t.TempDir(), time.Now(), 0o644, "weights", []int{2, 0, 1}), true},
		{"other content", layer(t.TempDir(), time.Now(), 0o644, "weights2", []int{0, 1, 2}), false},
	} {
		if got := digest(t, tt.layer); (got == first) != tt.same {
			t.Errorf("%s: digest %s, first %s; same = %t, want %t", tt.name, got, first, got == first, tt.same)
		}
	}
}

func TestLayer_entriesAreRootOwnedAtTheEpochInOrder(t *testing.T) {
	dir := t.TempDir()
	l, err := build.Layer([]build.File{
		{Path: "/tmp", Mode: 0o1777, Dir: true},
		{Path: "/opt/modelserve/bin/modelserve", Mode: 0o755, Source: writeFile(t, filepath.Join(dir, "ms"), "elf", 0o700, time.Now())},
		{Path: "/etc/passwd", Mode: 0o644, Data: []byte("root:x:0:0::/:/sbin/nologin\n")},
	})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := l.Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	var got []string
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, h.Name+" "+os.FileMode(h.Mode).String()+strings.Repeat("t", int(h.Mode>>9&1)))
		if h.Uid != 0 || h.Gid != 0 || h.Uname != "" || h.Gname != "" || !h.ModTime.Equal(time.Unix(0, 0)) {
			t.Errorf("%s: owner %d:%d (%q:%q), time %s", h.Name, h.Uid, h.Gid, h.Uname, h.Gname, h.ModTime)
		}
	}
	want := []string{
		"etc/ -rwxr-xr-x", "etc/passwd -rw-r--r--",
		"opt/ -rwxr-xr-x", "opt/modelserve/ -rwxr-xr-x", "opt/modelserve/bin/ -rwxr-xr-x", "opt/modelserve/bin/modelserve -rwxr-xr-x",
		"tmp/ -rwxrwxrwxt",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("entries:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if mt, _ := l.MediaType(); mt != "application/vnd.oci.image.layer.v1.tar+gzip" {
		t.Errorf("media type %s", mt)
	}
}

func TestLayer_refusesWhatCannotBePacked(t *testing.T) {
	for _, tt := range []struct {
		name  string
		files []build.File
		want  string
	}{
		{"relative path", []build.File{{Path: "etc/x", Data: []byte("x")}}, "absolute"},
		{"unclean path", []build.File{{Path: "/etc/../x", Data: []byte("x")}}, "clean"},
		{"twice", []build.File{{Path: "/x", Data: []byte("a")}, {Path: "/x", Data: []byte("b")}}, "twice"},
		{"missing source", []build.File{{Path: "/x", Source: "/nonexistent/file"}}, "/nonexistent/file"},
	} {
		if _, err := build.Layer(tt.files); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: %v, want an error about %q", tt.name, err, tt.want)
		}
	}
}
