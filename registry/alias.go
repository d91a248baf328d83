package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"syscall"

	"github.com/modelserve/modelserve/internal/atomicfile"
	"github.com/modelserve/modelserve/model"
)

// A model's aliases (prod, staging) name one of its versions each, and
// move: NAME:ALIAS reads as the version the alias names now, and a server
// serving NAME:ALIAS follows it. They live in models/NAME/aliases.json,
// written whole, under an exclusive lock of models/NAME/aliases.lock.
const (
	aliasFile     = "aliases.json"
	aliasLockFile = "aliases.lock"
	// maxAliasBytes bounds the file a registry reader parses.
	maxAliasBytes = 1 << 20
)

// Aliases are a model's aliases, alias to version; none is an empty map.
func (r *Registry) Aliases(name string) (map[string]string, error) {
	if err := model.CheckName(model.ModelName, name); err != nil {
		return nil, err
	}
	if err := r.confined(modelsDir, name, aliasFile); err != nil {
		return nil, err
	}
	return readAliases(filepath.Join(r.root, modelsDir, name, aliasFile))
}

func readAliases(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]string{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading aliases: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxAliasBytes+1))
	if err != nil {
		return nil, fmt.Errorf("reading aliases: %w", err)
	}
	if len(b) > maxAliasBytes {
		return nil, fmt.Errorf("%s is larger than %d bytes; it is not the registry's", path, maxAliasBytes)
	}
	aliases := map[string]string{}
	if err := json.Unmarshal(b, &aliases); err != nil {
		return nil, fmt.Errorf("%s is not an alias file: %w", path, err)
	}
	for a, v := range aliases {
		if model.CheckName(model.VersionName, a) != nil || model.CheckName(model.VersionName, v) != nil {
			return nil, fmt.Errorf("%s holds an alias %q → %q no command could have written", path, a, v)
		}
	}
	return aliases, nil
}

// SetAlias points alias at version, which must exist; an alias that
// existed moves. An alias cannot be named as a version is: NAME:REF must
// mean one thing.
func (r *Registry) SetAlias(name, alias, version string) error {
	if err := model.CheckName(model.VersionName, alias); err != nil {
		return fmt.Errorf("alias: %w", err)
	}
	v, err := r.Get(name, version)
	if err != nil {
		return err
	}
	if v.Version != version {
		return fmt.Errorf("%s:%s is an alias; point %s at a version", name, version, alias)
	}
	if _, err := r.readManifest(name, alias); err == nil {
		return fmt.Errorf("%s:%s %w as a version; an alias needs a name of its own", name, alias, ErrExists)
	}
	return r.editAliases(name, func(aliases map[string]string) error {
		aliases[alias] = version
		return nil
	})
}

// RemoveAlias deletes an alias; the version it named stays.
func (r *Registry) RemoveAlias(name, alias string) error {
	if err := model.CheckName(model.VersionName, alias); err != nil {
		return fmt.Errorf("alias: %w", err)
	}
	return r.editAliases(name, func(aliases map[string]string) error {
		if _, ok := aliases[alias]; !ok {
			return fmt.Errorf("alias %s:%s: %w", name, alias, ErrNotFound)
		}
		delete(aliases, alias)
		return nil
	})
}

// editAliases changes a model's aliases under its lock, so two commands
// moving aliases at once both take effect.
func (r *Registry) editAliases(name string, edit func(map[string]string) error) error {
	if err := model.CheckName(model.ModelName, name); err != nil {
		return err
	}
	for _, f := range []string{aliasFile, aliasLockFile} {
		if err := r.confined(modelsDir, name, f); err != nil {
			return err
		}
	}
	dir := filepath.Join(r.root, modelsDir, name)
	lock, err := os.OpenFile(filepath.Join(dir, aliasLockFile), os.O_RDONLY|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("changing %s's aliases: %w", name, err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("changing %s's aliases: %w", name, err)
	}
	aliases, err := readAliases(filepath.Join(dir, aliasFile))
	if err != nil {
		return err
	}
	if err := edit(aliases); err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, aliasFile), 0o644, func(w io.Writer) error {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(aliases)
	})
}

// AliasesOf lists, sorted, the aliases (of a model's, as Aliases gives
// them) that name version.
func AliasesOf(aliases map[string]string, version string) []string {
	var out []string
	for a, v := range aliases {
		if v == version {
			out = append(out, a)
		}
	}
	slices.Sort(out)
	return out
}
