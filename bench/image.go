package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/modelserve/modelserve/internal/ocitest"
	"github.com/modelserve/modelserve/onnxrt"
)

// imageSection times modelserve build on the encoder against a real
// registry on loopback: the first push to an empty repository, an
// unchanged rebuild, and a new model version; the bytes each sends are
// counted from the registry's own log and storage.
func imageSection(e *env) (string, error) {
	dir := filepath.Join(e.work, "image")
	if err := os.MkdirAll(filepath.Join(dir, "registry"), 0o755); err != nil {
		return "", err
	}
	reg, err := ocitest.Start(filepath.Join(dir, "registry"), nil)
	if err != nil {
		return "", err
	}
	defer reg.Stop()
	lib, err := onnxrt.FindLibrary()
	if err != nil {
		return "", err
	}
	base := filepath.Join(dir, "base")
	if err := ocitest.WriteHostBase(base, e.o.binary, lib); err != nil {
		return "", err
	}
	// sent runs one build and reports its time and what the registry took.
	sent := func(model, repo string) (time.Duration, int, int64, error) {
		before := len(reg.BlobsReceived())
		cmd := exec.Command(e.o.binary, "--registry", e.registry, "build", "--model", model,
			"--base", "oci:"+base+":base", "--repo", reg.Addr+"/"+repo)
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		start := time.Now()
		if err := cmd.Run(); err != nil {
			return 0, 0, 0, fmt.Errorf("modelserve build %s: %v\n%s", model, err, stderr.String())
		}
		elapsed := time.Since(start)
		blobs := reg.BlobsReceived()[before:]
		var n int64
		for _, d := range blobs {
			size, err := reg.BlobSize(d)
			if err != nil {
				return 0, 0, 0, err
			}
			n += size
		}
		return elapsed, len(blobs), n, nil
	}
	type row struct {
		what  string
		times []time.Duration
		blobs int
		bytes int64
	}
	const rounds = 3
	rows := []*row{
		{what: "first build and push, empty repository"},
		{what: "unchanged rebuild: content tag found, nothing pushed"},
		{what: "new model version: model layer and config only"},
	}
	if out, err := exec.Command(e.o.binary, "--registry", e.registry, "registry", "log", "--name", encoder.name, "--version", "2",
		"--file", e.modelPath(encoder), "--comment", "retrained").CombinedOutput(); err != nil {
		return "", fmt.Errorf("registering %s:2: %v\n%s", encoder.name, err, out)
	}
	for i := range rounds {
		repo := fmt.Sprintf("bench/encoder-%d", i)
		for j, step := range []string{encoder.name + ":1", encoder.name + ":1", encoder.name + ":2"} {
			d, blobs, n, err := sent(step, repo)
			if err != nil {
				return "", err
			}
			rows[j].times = append(rows[j].times, d)
			rows[j].blobs, rows[j].bytes = blobs, n
		}
	}
	model, err := os.Stat(e.modelPath(encoder))
	if err != nil {
		return "", err
	}
	var b strings.Builder
	fmt.Fprintf(&b, "## image: packaging the encoder\n\n")
	fmt.Fprintf(&b, "`modelserve build --model encoder:N --base oci:BASE --repo 127.0.0.1:PORT/...` against Debian's docker-registry on loopback; the base is %s of this machine's shared libraries, the model file %s. Wall time of the whole command (the median of %d, each in a fresh repository); blobs and bytes as the registry received and stored them.\n\n",
		mib(baseSize(base)), mib(model.Size()), rounds)
	b.WriteString("| step | wall time | blobs sent | bytes sent |\n|---|---:|---:|---:|\n")
	for _, r := range rows {
		slices.Sort(r.times)
		fmt.Fprintf(&b, "| %s | %s | %d | %s |\n", r.what, short(r.times[len(r.times)/2]), r.blobs, mib(r.bytes))
	}
	b.WriteString("\nThe first push sends the base, the runtime layer (modelserve and ONNX Runtime, gzip) and the model layer; the unchanged rebuild still reads and compresses every layer once to learn the image's digest, then only asks the registry for it and adds the readable tag.\n")
	return b.String(), nil
}

// baseSize is the size of a layout's blobs: the base image, compressed.
func baseSize(layout string) int64 {
	var n int64
	filepath.Walk(filepath.Join(layout, "blobs"), func(_ string, info os.FileInfo, err error) error {
		if err == nil && info.Mode().IsRegular() {
			n += info.Size()
		}
		return nil
	})
	return n
}
