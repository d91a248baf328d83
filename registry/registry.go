package registry

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/modelserve/modelserve/model"
	"github.com/modelserve/modelserve/onnxrt"

	"github.com/modelserve/modelserve/internal/atomicfile"
)

// RootEnv names the environment variable that sets the registry directory.
const RootEnv = "MODELSERVE_REGISTRY"

const (
	manifestFile = "manifest.json"
	// lockFile is what services hold and Delete tests; the manifest itself
	// is replaced on updates, which would drop a lock held on it.
	lockFile   = "lock"
	modelFile  = "model.onnx"
	modelsDir  = "models"
	stagingDir = ".staging"
	// A staging folder this old belongs to a log that crashed.
	staleStaging = time.Hour
)

// Errors a caller may want to tell apart.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	ErrInUse    = errors.New("in use by a running service")
	ErrCorrupt  = errors.New("checksum mismatch")
)

// Inspector reads a model's signature from its bytes; ONNX Runtime does it
// for real.
type Inspector interface {
	Inspect(onnx []byte) (onnxrt.Info, error)
}

// Registry is a model registry rooted at a directory.
type Registry struct {
	root    string
	inspect Inspector
}

// DefaultRoot is MODELSERVE_REGISTRY, else XDG_DATA_HOME/modelserve/registry,
// else ~/.local/share/modelserve/registry.
func DefaultRoot() string {
	if d := os.Getenv(RootEnv); d != "" {
		return d
	}
	if d := os.Getenv("XDG_DATA_HOME"); d != "" {
		return filepath.Join(d, "modelserve", "registry")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "share", "modelserve", "registry")
	}
	return filepath.Join(os.TempDir(), "modelserve-registry")
}

// Open opens the registry at root. With an inspector it may write and is
// created if needed; without one it only reads and writes nothing, so a
// registry baked read-only into an image serves as well.
func Open(root string, inspect Inspector) (*Registry, error) {
	r := &Registry{root: root, inspect: inspect}
	if inspect == nil {
		return r, nil
	}
	for _, d := range []string{modelsDir, stagingDir} {
		if err := r.confined(d); err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			return nil, fmt.Errorf("opening registry %s: %w", root, err)
		}
	}
	r.sweepStaging()
	return r, nil
}

// Root is the registry's directory.
func (r *Registry) Root() string { return r.root }

// LogRequest describes a model version to register.
type LogRequest struct {
	Name, Version string
	// File is the ONNX model to copy into the registry.
	File string
	// Functions default to one, predict, returning every output.
	Functions []model.Function
	// Features names the columns of feature-matrix inputs, by input name;
	// the key "" stands for the model's only feature-matrix input.
	Features map[string][]string
	Comment  string
	Settings Settings
}

// Log copies a model into the registry as a new version. The model must
// load in ONNX Runtime and its functions must fit its outputs. Logging the
// same bytes under an existing version again is a no-op that returns the
// existing version; different bytes are refused with ErrExists.
func (r *Registry) Log(ctx context.Context, req LogRequest) (Version, error) {
	if err := model.CheckName(model.ModelName, req.Name); err != nil {
		return Version{}, err
	}
	if err := model.CheckName(model.VersionName, req.Version); err != nil {
		return Version{}, err
	}
	if r.inspect == nil {
		return Version{}, fmt.Errorf("this registry was opened read-only")
	}
	if aliases, err := r.Aliases(req.Name); err != nil {
		return Version{}, err
	} else if _, ok := aliases[req.Version]; ok {
		return Version{}, fmt.Errorf("%s:%s %w as an alias; a version needs a name of its own", req.Name, req.Version, ErrExists)
	}
	final := r.versionDir(req.Name, req.Version)
	if err := r.confined(modelsDir, req.Name, req.Version); err != nil {
		return Version{}, err
	}
	if _, err := os.Stat(final); err == nil {
		return r.sameOrExists(ctx, req)
	}
	stage, err := os.MkdirTemp(filepath.Join(r.root, stagingDir), req.Name+"-"+req.Version+"-")
	if err != nil {
		return Version{}, fmt.Errorf("staging %s: %w", req.File, err)
	}
	defer os.RemoveAll(stage) // a no-op once the folder has been renamed

	if err := req.Settings.Validate(); err != nil {
		return Version{}, err
	}
	v := Version{Name: req.Name, Version: req.Version, Comment: req.Comment, File: modelFile, Dir: stage, Settings: req.Settings}
	v.Size, v.SHA256, err = copyFile(ctx, req.File, v.ModelPath())
	if err != nil {
		return Version{}, err
	}
	// Inspect the staged copy: what was checked is what is stored.
	info, err := r.inspectFile(v.ModelPath())
	if err != nil {
		return Version{}, fmt.Errorf("refusing %s: %w", req.File, err)
	}
	v.Signature, err = buildSignature(info, req)
	if err != nil {
		return Version{}, fmt.Errorf("refusing %s: %w", req.File, err)
	}
	v.Producer, v.Description = info.Producer, info.Description
	if len(info.Metadata) > 0 {
		v.Metadata = info.Metadata
	}
	v.Created = time.Now().UTC().Truncate(time.Second)
	if err := os.WriteFile(filepath.Join(stage, lockFile), nil, 0o444); err != nil {
		return Version{}, fmt.Errorf("registering %s: %w", v.Ref(), err)
	}
	if err := writeManifest(v); err != nil {
		return Version{}, err
	}
	parent := filepath.Dir(final)
	if err := os.MkdirAll(parent, 0o755); err != nil {
		return Version{}, fmt.Errorf("creating %s: %w", parent, err)
	}
	// The rename is the commit point: a crash before it leaves only a
	// staging folder, which no reader looks at.
	if err := os.Rename(stage, final); err != nil {
		if errors.Is(err, fs.ErrExist) || errors.Is(err, syscall.ENOTEMPTY) {
			return r.sameOrExists(ctx, req)
		}
		return Version{}, fmt.Errorf("registering %s: %w", v.Ref(), err)
	}
	if err := syncDir(parent); err != nil {
		return Version{}, err
	}
	v.Dir = final
	return v, nil
}

func (r *Registry) inspectFile(path string) (onnxrt.Info, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return onnxrt.Info{}, err
	}
	return r.inspect.Inspect(b)
}

// sameOrExists answers a log of a version that is already there: the same
// bytes with the same functions and features are a no-op.
func (r *Registry) sameOrExists(ctx context.Context, req LogRequest) (Version, error) {
	existing, err := r.Get(req.Name, req.Version)
	if err != nil {
		return Version{}, err
	}
	_, sum, err := hashFile(ctx, req.File)
	if err != nil {
		return Version{}, fmt.Errorf("reading model: %w", err)
	}
	if sum != existing.SHA256 {
		return Version{}, fmt.Errorf("model %s %w with different content (sha256 %s); log a new version", existing.Ref(), ErrExists, existing.SHA256)
	}
	info, err := r.inspectFile(req.File)
	if err != nil {
		return Version{}, fmt.Errorf("refusing %s: %w", req.File, err)
	}
	sig, err := buildSignature(info, req)
	if err != nil {
		return Version{}, fmt.Errorf("refusing %s: %w", req.File, err)
	}
	if !reflect.DeepEqual(sig.Functions, existing.Signature.Functions) || !reflect.DeepEqual(sig.Features, existing.Signature.Features) {
		return Version{}, fmt.Errorf("model %s %w with the same file but other functions or features; log a new version", existing.Ref(), ErrExists)
	}
	if req.Settings != existing.Settings {
		return Version{}, fmt.Errorf("model %s %w with other settings; change them with registry set", existing.Ref(), ErrExists)
	}
	return existing, nil
}

func buildSignature(info onnxrt.Info, req LogRequest) (model.Signature, error) {
	sig := model.Signature{Inputs: info.Inputs, Outputs: info.Outputs, Functions: req.Functions}
	if len(req.Features) > 0 {
		sig.Features = map[string][]string{}
		for input, names := range req.Features {
			if input == "" {
				only, err := onlyFeatureMatrix(sig)
				if err != nil {
					return sig, err
				}
				input = only
			}
			sig.Features[input] = names
		}
	}
	if len(sig.Functions) == 0 {
		sig.Functions = []model.Function{{Name: "predict"}}
	}
	for i, fn := range sig.Functions {
		if len(fn.Outputs) == 0 && len(sig.Functions) == 1 {
			// Every output modelserve can encode; others stay listed but
			// unserved.
			for _, o := range info.Outputs {
				if o.Kind == "" && o.DType != model.Invalid {
					sig.Functions[i].Outputs = append(sig.Functions[i].Outputs, o.Name)
				}
			}
		}
	}
	return sig, sig.Validate()
}

func onlyFeatureMatrix(sig model.Signature) (string, error) {
	var names []string
	for i, in := range sig.Inputs {
		if _, ok := sig.FeatureCount(i); ok {
			names = append(names, in.Name)
		}
	}
	if len(names) != 1 {
		return "", fmt.Errorf("feature names given without an input, but the model has %d [batch, F] numeric inputs (%s); name the input (INPUT=a,b,c)",
			len(names), strings.Join(names, ", "))
	}
	return names[0], nil
}

// List returns every version, by name and then version order.
func (r *Registry) List() ([]Version, error) {
	if err := r.confined(modelsDir); err != nil {
		return nil, err
	}
	names, err := readDirNames(filepath.Join(r.root, modelsDir))
	if err != nil {
		return nil, err
	}
	var all []Version
	for _, name := range names {
		vs, err := r.versions(name)
		if err != nil {
			return nil, err
		}
		all = append(all, vs...)
	}
	return all, nil
}

// versions lists one model's versions, oldest first.
func (r *Registry) versions(name string) ([]Version, error) {
	if err := r.confined(modelsDir, name); err != nil {
		return nil, err
	}
	dirs, err := readDirNames(filepath.Join(r.root, modelsDir, name))
	if err != nil {
		return nil, err
	}
	slices.SortFunc(dirs, compareVersions)
	out := make([]Version, 0, len(dirs))
	for _, d := range dirs {
		v, err := r.readManifest(name, d)
		if err != nil {
			return nil, err
		}
		out = append(out, v)
	}
	return out, nil
}

// Get returns a version; an empty version means the latest (in natural
// version order: 10 after 9).
func (r *Registry) Get(name, version string) (Version, error) {
	if err := model.CheckName(model.ModelName, name); err != nil {
		return Version{}, err
	}
	if version == "" {
		vs, err := r.versions(name)
		if err != nil {
			return Version{}, err
		}
		if len(vs) == 0 {
			return Version{}, fmt.Errorf("model %q: %w in registry %s", name, ErrNotFound, r.root)
		}
		return vs[len(vs)-1], nil
	}
	if err := model.CheckName(model.VersionName, version); err != nil {
		return Version{}, err
	}
	v, err := r.readManifest(name, version)
	if errors.Is(err, fs.ErrNotExist) {
		// Not a version: perhaps an alias of one.
		aliases, aerr := r.Aliases(name)
		if aerr != nil {
			return Version{}, aerr
		}
		if target, ok := aliases[version]; ok {
			v, err = r.readManifest(name, target)
			if errors.Is(err, fs.ErrNotExist) {
				return Version{}, fmt.Errorf("model %s:%s names version %s, which is gone: %w in registry %s", name, version, target, ErrNotFound, r.root)
			}
			return v, err
		}
		return Version{}, fmt.Errorf("model %s:%s: %w in registry %s", name, version, ErrNotFound, r.root)
	}
	return v, err
}

// SetSettings replaces a version's serving settings. Services running it
// keep theirs until they restart.
func (r *Registry) SetSettings(name, version string, s Settings) (Version, error) {
	if err := s.Validate(); err != nil {
		return Version{}, err
	}
	v, err := r.Get(name, version)
	if err != nil {
		return Version{}, err
	}
	v.Settings = s
	if err := writeManifest(v); err != nil {
		return Version{}, err
	}
	return v, nil
}

// Delete removes a version, unless a service holds it (see Acquire).
func (r *Registry) Delete(name, version string) error {
	v, err := r.Get(name, version)
	if err != nil {
		return err
	}
	if v.Version != version {
		return fmt.Errorf("%s:%s is an alias (of version %s); delete versions by their name, or remove the alias", name, version, v.Version)
	}
	aliases, err := r.Aliases(name)
	if err != nil {
		return err
	}
	if as := AliasesOf(aliases, version); len(as) > 0 {
		return fmt.Errorf("cannot delete %s: it is %w as %s:%s; move or remove the alias first", v.Ref(), ErrInUse, name, strings.Join(as, ", "+name+":"))
	}
	if err := r.confined(modelsDir, v.Name, v.Version, lockFile); err != nil {
		return err
	}
	lock, err := openLock(v.Dir)
	if err != nil {
		return fmt.Errorf("deleting %s: %w", v.Ref(), err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return fmt.Errorf("cannot delete %s: it is %w; stop that service first", v.Ref(), ErrInUse)
		}
		return fmt.Errorf("deleting %s: %w", v.Ref(), err)
	}
	// Move it out of sight first, so nobody finds half a version.
	if err := os.MkdirAll(filepath.Join(r.root, stagingDir), 0o755); err != nil {
		return fmt.Errorf("deleting %s: %w", v.Ref(), err)
	}
	trash, err := os.MkdirTemp(filepath.Join(r.root, stagingDir), "deleted-")
	if err != nil {
		return fmt.Errorf("deleting %s: %w", v.Ref(), err)
	}
	if err := os.Rename(v.Dir, filepath.Join(trash, "v")); err != nil {
		os.Remove(trash)
		return fmt.Errorf("deleting %s: %w", v.Ref(), err)
	}
	if err := os.RemoveAll(trash); err != nil {
		return fmt.Errorf("deleting %s: %w", v.Ref(), err)
	}
	// The model's folder goes with its last version (its alias files,
	// which can name no version then, with it); Remove fails harmlessly
	// if another version remains.
	if rest, err := readDirNames(filepath.Dir(v.Dir)); err == nil && len(rest) == 0 {
		for _, f := range []string{aliasFile, aliasLockFile} {
			os.Remove(filepath.Join(filepath.Dir(v.Dir), f))
		}
	}
	os.Remove(filepath.Dir(v.Dir))
	return nil
}

// Acquire marks a version as served until release is called, or the
// process ends: Delete refuses it meanwhile. The mark is a shared lock on
// the version's lock file, so the kernel drops it if the service dies.
func (r *Registry) Acquire(v Version) (release func() error, err error) {
	if err := r.confined(modelsDir, v.Name, v.Version, lockFile); err != nil {
		return nil, err
	}
	f, err := openLock(v.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("model %s: %w in registry %s", v.Ref(), ErrNotFound, r.root)
	}
	if err != nil {
		return nil, fmt.Errorf("acquiring %s: %w", v.Ref(), err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH); err != nil {
		f.Close()
		return nil, fmt.Errorf("acquiring %s: %w", v.Ref(), err)
	}
	// A delete may have moved the folder between Get and the lock.
	if _, err := os.Stat(filepath.Join(v.Dir, manifestFile)); err != nil {
		f.Close()
		return nil, fmt.Errorf("model %s: %w (deleted while starting)", v.Ref(), ErrNotFound)
	}
	return f.Close, nil
}

// openLock opens a version's lock file. A version logged before lock files
// existed gets one, or, in a registry it cannot write, its manifest is
// locked instead (it is then never rewritten either).
func openLock(dir string) (*os.File, error) {
	path := filepath.Join(dir, lockFile)
	f, err := os.Open(path)
	if !errors.Is(err, fs.ErrNotExist) {
		return f, err
	}
	if _, err := os.Stat(filepath.Join(dir, manifestFile)); err != nil {
		return nil, err
	}
	if f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE, 0o444); err == nil {
		return f, nil
	}
	return os.Open(filepath.Join(dir, manifestFile))
}

// Verify recomputes the model file's sha256 and compares it with the one
// recorded when it was logged.
func (r *Registry) Verify(ctx context.Context, v Version) error {
	if err := r.confined(modelsDir, v.Name, v.Version, v.File); err != nil {
		return err
	}
	size, sum, err := hashFile(ctx, v.ModelPath())
	if err != nil {
		return fmt.Errorf("verifying %s: %w", v.Ref(), err)
	}
	if sum != v.SHA256 || size != v.Size {
		return fmt.Errorf("model file %s of %s is corrupt: %w: its sha256 is %s (%d bytes), the registry recorded %s (%d bytes)",
			v.ModelPath(), v.Ref(), ErrCorrupt, sum, size, v.SHA256, v.Size)
	}
	return nil
}

func (r *Registry) versionDir(name, version string) string {
	return filepath.Join(r.root, modelsDir, name, version)
}

// sweepStaging removes what crashed logs and deletes left behind.
func (r *Registry) sweepStaging() {
	dir := filepath.Join(r.root, stagingDir)
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if info, err := e.Info(); err == nil && time.Since(info.ModTime()) > staleStaging {
			os.RemoveAll(filepath.Join(dir, e.Name()))
		}
	}
}

func (r *Registry) readManifest(name, version string) (Version, error) {
	if err := r.confined(modelsDir, name, version, manifestFile); err != nil {
		return Version{}, err
	}
	dir := r.versionDir(name, version)
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return Version{}, err
	}
	var v Version
	if err := json.Unmarshal(b, &v); err != nil {
		return Version{}, fmt.Errorf("reading %s: %w", filepath.Join(dir, manifestFile), err)
	}
	// The manifest names the model's file: one name in this folder.
	if v.Name != name || v.Version != version || v.File != filepath.Base(v.File) || strings.HasPrefix(v.File, ".") {
		return Version{}, fmt.Errorf("%s does not describe %s:%s in this folder (it says %s:%s, file %q)",
			filepath.Join(dir, manifestFile), name, version, v.Name, v.Version, v.File)
	}
	v.Dir = dir
	return v, nil
}

// confined refuses a path under the root (given by its parts) that passes
// through a symbolic link. The registry makes none; one put there by hand
// could lead its reads, locks and deletes outside the root. Parts that do
// not exist yet are fine. (Someone who can write the registry while a
// command runs could still swap a folder for a link between this check
// and its use; the check keeps out links already there.)
func (r *Registry) confined(parts ...string) error {
	p := r.root
	for _, part := range parts {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading registry: %w", err)
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			return fmt.Errorf("registry %s: %s is a symbolic link (to %s); the registry follows none, so that nothing in it leads outside it",
				r.root, p, target)
		}
	}
	return nil
}

// writeManifest writes v's manifest whole, through a temporary file and a
// rename, so a reader sees the old manifest or the new one, never half.
func writeManifest(v Version) error {
	b, err := v.Manifest()
	if err != nil {
		return err
	}
	path := filepath.Join(v.Dir, manifestFile)
	if err := atomicfile.Write(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	}); err != nil {
		return err
	}
	return syncDir(v.Dir)
}

// copyFile copies src to dst, syncing it, and returns its size and sha256.
func copyFile(ctx context.Context, src, dst string) (int64, string, error) {
	in, err := os.Open(src)
	if err != nil {
		return 0, "", fmt.Errorf("reading model: %w", err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return 0, "", fmt.Errorf("copying %s: %w", src, err)
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), ctxReader{ctx, in})
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return 0, "", fmt.Errorf("copying %s: %w", src, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(ctx context.Context, path string) (int64, string, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, ctxReader{ctx, f})
	if err != nil {
		return 0, "", fmt.Errorf("reading %s: %w", path, err)
	}
	return n, hex.EncodeToString(h.Sum(nil)), nil
}

// ctxReader stops a long copy or hash when its context ends.
type ctxReader struct {
	ctx context.Context
	r   io.Reader
}

func (c ctxReader) Read(p []byte) (int, error) {
	if err := c.ctx.Err(); err != nil {
		return 0, err
	}
	return c.r.Read(p)
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("syncing %s: %w", dir, err)
	}
	return nil
}

// readDirNames lists the folders of dir, skipping hidden ones; a missing
// dir is empty.
func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading registry: %w", err)
	}
	var names []string
	for _, e := range entries {
		// Links are not folders here (DirEntry does not follow them), and a
		// folder whose name no command could have made is not the
		// registry's.
		if e.IsDir() && model.CheckName(model.ModelName, e.Name()) == nil {
			names = append(names, e.Name())
		}
	}
	return names, nil
}
