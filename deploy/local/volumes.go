package local

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/modelserve/modelserve/deploy/spec"
	"github.com/modelserve/modelserve/model"
)

// ParseStage reads --stage NAME=DIR: the directory that stands in for a
// stage (its folders for stage folders).
func ParseStage(arg string) (name, dir string, err error) {
	name, dir, ok := strings.Cut(arg, "=")
	if !ok || name == "" || dir == "" {
		return "", "", fmt.Errorf("--stage %q: write NAME=DIR, e.g. model_stage=./stage", arg)
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", "", fmt.Errorf("--stage %s: %w", name, err)
	}
	if fi, err := os.Stat(abs); err != nil || !fi.IsDir() {
		return "", "", fmt.Errorf("--stage %s: %s is not a directory", name, dir)
	}
	return strings.TrimPrefix(name, "@"), abs, nil
}

// stageDir finds the directory for a stage the spec names as written
// (db.schema.stage) or by its last part (stage).
func stageDir(stages map[string]string, v spec.Volume) (string, error) {
	name, sub := v.Stage()
	last := name[strings.LastIndex(name, ".")+1:]
	for k, dir := range stages {
		if strings.EqualFold(k, name) || strings.EqualFold(k, last) {
			d := filepath.Join(dir, filepath.FromSlash(sub))
			if !within(dir, d) {
				return "", fmt.Errorf("volume %s: stage folder %s climbs out of the stage's directory %s", v.Name, sub, dir)
			}
			if fi, err := os.Stat(d); err != nil || !fi.IsDir() {
				return "", fmt.Errorf("volume %s: stage folder %s is not a directory", v.Name, d)
			}
			return d, nil
		}
	}
	return "", fmt.Errorf("volume %s mounts stage @%s: give its local directory with --stage %s=DIR", v.Name, name, last)
}

// ParseSecret reads --secret NAME=SOURCE, the keys of a secret object:
//
//	NAME=DIR                 one file per key, as a mounted secret has
//	NAME=FILE                KEY=VALUE lines
//	NAME=env:VAR             one key, secret_string, from $VAR
//	NAME=env:KEY=VAR,...     keys from variables
func ParseSecret(arg string, getenv func(string) (string, bool)) (name string, keys map[string]string, err error) {
	name, src, ok := strings.Cut(arg, "=")
	if !ok || name == "" || src == "" {
		return "", nil, fmt.Errorf("--secret %q: write NAME=FILE, NAME=DIR or NAME=env:VAR", arg)
	}
	keys = map[string]string{}
	if vars, ok := strings.CutPrefix(src, "env:"); ok {
		for _, kv := range strings.Split(vars, ",") {
			key, v, ok := strings.Cut(kv, "=")
			if !ok {
				key, v = "secret_string", kv
			}
			val, set := getenv(v)
			if !set {
				return "", nil, fmt.Errorf("--secret %s: $%s is not set", name, v)
			}
			keys[key] = val
		}
		return checkKeys(name, keys)
	}
	fi, err := os.Stat(src)
	if err != nil {
		return "", nil, fmt.Errorf("--secret %s: %w", name, err)
	}
	if fi.IsDir() {
		entries, err := os.ReadDir(src)
		if err != nil {
			return "", nil, fmt.Errorf("--secret %s: %w", name, err)
		}
		for _, e := range entries {
			if e.Type().IsRegular() && !strings.HasPrefix(e.Name(), ".") {
				b, err := os.ReadFile(filepath.Join(src, e.Name()))
				if err != nil {
					return "", nil, fmt.Errorf("--secret %s: %w", name, err)
				}
				keys[e.Name()] = strings.TrimSuffix(string(b), "\n")
			}
		}
	} else {
		b, err := os.ReadFile(src)
		if err != nil {
			return "", nil, fmt.Errorf("--secret %s: %w", name, err)
		}
		sc := bufio.NewScanner(bytes.NewReader(b))
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				return "", nil, fmt.Errorf("--secret %s: %s:%d is not KEY=VALUE", name, src, n)
			}
			keys[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if len(keys) == 0 {
		return "", nil, fmt.Errorf("--secret %s: %s holds no keys", name, src)
	}
	return checkKeys(name, keys)
}

// checkKeys accepts a secret's keys, each of which becomes a file's name
// in the secret's folder.
func checkKeys(name string, keys map[string]string) (string, map[string]string, error) {
	for k := range keys {
		if err := model.CheckName(model.KeyName, k); err != nil {
			return "", nil, fmt.Errorf("--secret %s: %w", name, err)
		}
	}
	return name, keys, nil
}

// secretValue is what envVarName receives: the key secretKeyRef names, or
// the only key of a one-key secret (a generic string).
func secretValue(secrets map[string]map[string]string, s spec.Secret) (string, error) {
	keys, err := secretKeys(secrets, s)
	if err != nil {
		return "", err
	}
	if s.SecretKeyRef != "" {
		v, ok := keys[s.SecretKeyRef]
		if !ok {
			return "", fmt.Errorf("secret %s has no key %q (it has %s)", s.SnowflakeSecret, s.SecretKeyRef, strings.Join(sortedKeys(keys), ", "))
		}
		return v, nil
	}
	if len(keys) != 1 {
		return "", fmt.Errorf("secret %s has %d keys (%s): say which with secretKeyRef", s.SnowflakeSecret, len(keys), strings.Join(sortedKeys(keys), ", "))
	}
	for _, v := range keys {
		return v, nil
	}
	return "", nil
}

func secretKeys(secrets map[string]map[string]string, s spec.Secret) (map[string]string, error) {
	for name, keys := range secrets {
		if strings.EqualFold(name, s.SnowflakeSecret) {
			return keys, nil
		}
	}
	return nil, fmt.Errorf("secret %s: give its keys with --secret %s=FILE (or DIR, or env:VAR)", s.SnowflakeSecret, s.SnowflakeSecret)
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// writeSecretDir writes one file per key, readable by its owner only.
func writeSecretDir(dir string, keys map[string]string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for k, v := range keys {
		if err := os.WriteFile(filepath.Join(dir, k), []byte(v), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// memoryVolume makes dir a tmpfs of the volume's size where this process
// may mount (root); elsewhere it stays a directory whose size the
// supervisor watches.
func memoryVolume(dir string, size int64) (mounted bool) {
	opts := fmt.Sprintf("size=%d,mode=0777", size)
	return syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_NOSUID|syscall.MS_NODEV, opts) == nil
}

func unmount(dir string) { syscall.Unmount(dir, syscall.MNT_DETACH) }

// dirSize is the bytes of regular files under dir.
func dirSize(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}
