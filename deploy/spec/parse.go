package spec

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/modelserve/modelserve/model"
)

// A Problem is one finding in a spec, with the line it is on.
type Problem struct {
	File   string
	Line   int
	Column int
	Path   string // e.g. spec.containers[0].resources
	Msg    string
}

func (p *Problem) Error() string {
	loc := p.File
	switch {
	case p.Line > 0 && p.Column > 0:
		loc = fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Column)
	case p.Line > 0:
		loc = fmt.Sprintf("%s:%d", p.File, p.Line)
	}
	if p.Path == "" {
		return fmt.Sprintf("%s: %s", loc, p.Msg)
	}
	return fmt.Sprintf("%s: %s: %s", loc, p.Path, p.Msg)
}

// Errors are every problem found in one spec; Parse returns them all at
// once, so a user fixes a file in one pass.
type Errors []*Problem

func (e Errors) Error() string {
	lines := make([]string, len(e))
	for i, p := range e {
		lines[i] = p.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap gives each problem to errors.As.
func (e Errors) Unwrap() []error {
	errs := make([]error, len(e))
	for i, p := range e {
		errs[i] = p
	}
	return errs
}

// Parsed is a valid spec and what was accepted with a warning: spellings
// the reference itself uses in examples but does not define.
type Parsed struct {
	Spec     *Spec
	Warnings []*Problem
}

// Parse reads and validates a spec. A spec with problems gives Errors that
// list all of them, each with its line.
func Parse(file string, data []byte) (*Parsed, error) {
	if len(data) > MaxBytes {
		return nil, Errors{{File: file, Msg: fmt.Sprintf("the file is %d bytes; a spec may be at most %d", len(data), MaxBytes)}}
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return nil, Errors{{File: file, Msg: fmt.Sprintf("not YAML: %v", strings.TrimPrefix(err.Error(), "yaml: "))}}
	}
	if p := checkSize(&root); p != nil {
		p.File = file
		return nil, Errors{p}
	}
	d := &decoder{file: file}
	s := d.file0(&root)
	if s != nil {
		d.validate(s)
	}
	if len(d.errs) > 0 {
		slices.SortStableFunc(d.errs, func(a, b *Problem) int { return a.Line - b.Line })
		return nil, d.errs
	}
	slices.SortStableFunc(d.warnings, func(a, b *Problem) int { return a.Line - b.Line })
	return &Parsed{Spec: s, Warnings: d.warnings}, nil
}

// Limits on what a spec file may hold. A spec is a few dozen lines; these
// bound what a hostile one can cost (YAML's aliases can make a small file
// stand for a huge tree).
const (
	MaxBytes = 1 << 20
	// MaxDepth bounds how deeply mappings and sequences nest.
	MaxDepth = model.MaxNesting
	// MaxNodes bounds the nodes the file stands for with every alias
	// expanded.
	MaxNodes = 100_000
)

// checkSize bounds the tree with its aliases expanded, without recursion.
// First its size, visiting each node once (a node's size is known once its
// children's are; an alias takes its anchor's), then, the expanded tree
// being small, its depth from the top, to name the line that goes too deep.
func checkSize(root *yaml.Node) *Problem {
	expand := func(n *yaml.Node) []*yaml.Node {
		if n.Kind == yaml.AliasNode && n.Alias != nil {
			return []*yaml.Node{n.Alias}
		}
		return n.Content
	}
	sizes := map[*yaml.Node]int{}
	stack := []*yaml.Node{root}
	for len(stack) > 0 {
		n := stack[len(stack)-1]
		if _, ok := sizes[n]; ok {
			stack = stack[:len(stack)-1]
			continue
		}
		size, pending := 1, false
		for _, c := range expand(n) {
			if cs, ok := sizes[c]; ok {
				size += cs
			} else {
				stack = append(stack, c)
				pending = true
			}
		}
		if pending {
			continue
		}
		if size > MaxNodes {
			return &Problem{Line: n.Line, Column: n.Column, Msg: fmt.Sprintf("the spec stands for more than %d values once its aliases are expanded", MaxNodes)}
		}
		sizes[n] = size
		stack = stack[:len(stack)-1]
	}
	type at struct {
		n     *yaml.Node
		depth int
	}
	walk := []at{{root, 0}}
	for len(walk) > 0 {
		w := walk[len(walk)-1]
		walk = walk[:len(walk)-1]
		depth := w.depth
		if w.n.Kind == yaml.MappingNode || w.n.Kind == yaml.SequenceNode {
			if depth++; depth > MaxDepth {
				return &Problem{Line: w.n.Line, Column: w.n.Column, Msg: fmt.Sprintf("mappings and sequences nest more than %d levels deep", MaxDepth)}
			}
		}
		for _, c := range expand(w.n) {
			walk = append(walk, at{c, depth})
		}
	}
	return nil
}

type decoder struct {
	file     string
	errs     Errors
	warnings []*Problem
}

func (d *decoder) fail(n *yaml.Node, path, format string, args ...any) {
	p := &Problem{File: d.file, Path: path, Msg: fmt.Sprintf(format, args...)}
	if n != nil {
		p.Line, p.Column = n.Line, n.Column
	}
	d.errs = append(d.errs, p)
}

func (d *decoder) warn(n *yaml.Node, path, format string, args ...any) {
	d.warnings = append(d.warnings, &Problem{File: d.file, Line: n.Line, Column: n.Column, Path: path, Msg: fmt.Sprintf(format, args...)})
}

// field is a key/value pair of a mapping, aliases resolved.
type field struct {
	key, val *yaml.Node
}

// fields checks that n is a mapping whose keys are all in allowed, and
// returns its pairs by key. Unknown and repeated keys are problems.
func (d *decoder) fields(n *yaml.Node, path string, allowed ...string) map[string]field {
	n = deref(n)
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "must be a mapping (key: value lines), not %s", describe(n))
		return nil
	}
	out := make(map[string]field, len(n.Content)/2)
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		switch {
		case !slices.Contains(allowed, k.Value):
			d.fail(k, path, "unknown field %q (known: %s)", k.Value, strings.Join(allowed, ", "))
		case out[k.Value].key != nil:
			d.fail(k, path, "%q is given twice (first on line %d)", k.Value, out[k.Value].key.Line)
		default:
			out[k.Value] = field{k, v}
		}
	}
	return out
}

func deref(n *yaml.Node) *yaml.Node {
	for n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		return deref(n.Content[0])
	}
	return n
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	}
	if n.Tag == "!!null" {
		return "empty"
	}
	return fmt.Sprintf("%q", n.Value)
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.Tag == "!!null" }

// str reads a scalar as text; numbers and booleans keep their spelling.
func (d *decoder) str(n *yaml.Node, path string) string {
	if n.Kind != yaml.ScalarNode || isNull(n) {
		d.fail(n, path, "must be a single value, not %s", describe(n))
		return ""
	}
	return n.Value
}

// required returns a field that must be there, or says it is missing.
func (d *decoder) required(fs map[string]field, n *yaml.Node, path, key, why string) (*yaml.Node, bool) {
	f, ok := fs[key]
	if !ok {
		d.fail(n, path, "%s is required%s", key, why)
		return nil, false
	}
	return f.val, true
}

// absPath reads a path inside a container, which must be absolute.
func (d *decoder) absPath(n *yaml.Node, path string) string {
	s := d.str(n, path)
	if s != "" && !strings.HasPrefix(s, "/") {
		d.fail(n, path, "%q must be an absolute path", s)
	}
	return s
}

// owner reads a stage volume's uid and gid.
func (d *decoder) owner(fs map[string]field, path string) (uid, gid *int) {
	read := func(k string) *int {
		f, ok := fs[k]
		if !ok {
			return nil
		}
		id, ok := d.integer(f.val, path+"."+k)
		if !ok {
			return nil
		}
		if id < 0 {
			d.fail(f.val, path+"."+k, "must not be negative")
		}
		return &id
	}
	return read("uid"), read("gid")
}

func (d *decoder) strings(n *yaml.Node, path string) []string {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "must be a list of strings, not %s", describe(n))
		return nil
	}
	out := make([]string, 0, len(n.Content))
	for i, c := range n.Content {
		out = append(out, d.str(deref(c), fmt.Sprintf("%s[%d]", path, i)))
	}
	return out
}

func (d *decoder) list(n *yaml.Node, path string) []*yaml.Node {
	if n.Kind != yaml.SequenceNode {
		d.fail(n, path, "must be a list (lines starting with -), not %s", describe(n))
		return nil
	}
	out := make([]*yaml.Node, len(n.Content))
	for i, c := range n.Content {
		out[i] = deref(c)
	}
	return out
}

func (d *decoder) integer(n *yaml.Node, path string) (int, bool) {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!int" {
		d.fail(n, path, "must be a whole number, not %s", describe(n))
		return 0, false
	}
	v, err := strconv.Atoi(n.Value)
	if err != nil {
		d.fail(n, path, "must be a whole number, not %q", n.Value)
		return 0, false
	}
	return v, true
}

func (d *decoder) port(n *yaml.Node, path string) int {
	p, ok := d.integer(n, path)
	if ok && (p < 1 || p > 65535) {
		d.fail(n, path, "port %d is outside 1-65535", p)
	}
	return p
}

func (d *decoder) boolean(n *yaml.Node, path string) bool {
	if n.Kind != yaml.ScalarNode || n.Tag != "!!bool" {
		d.fail(n, path, "must be true or false, not %s", describe(n))
		return false
	}
	return n.Value == "true" || n.Value == "True" || n.Value == "TRUE"
}

func (d *decoder) quantity(n *yaml.Node, path string) Quantity {
	q, err := ParseQuantity(d.str(n, path))
	if err != nil && n.Kind == yaml.ScalarNode && !isNull(n) {
		d.fail(n, path, "%v", err)
	}
	return q
}

// name checks the reference's rule for container, endpoint and volume names.
func (d *decoder) name(n *yaml.Node, path string) string {
	s := d.str(n, path)
	if s == "" {
		return s
	}
	if err := model.CheckName(model.ObjectName, s); err != nil {
		d.fail(n, path, "%v", err)
	}
	return s
}

var envRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (d *decoder) file0(root *yaml.Node) *Spec {
	if len(root.Content) == 0 {
		d.fail(nil, "", "the file is empty; a spec starts with \"spec:\"")
		return nil
	}
	top := deref(root)
	if top.Kind == yaml.MappingNode && !slices.ContainsFunc(top.Content, func(k *yaml.Node) bool { return k.Value == "spec" }) {
		d.fail(top, "", "the top-level field \"spec\" is missing: containers and the rest go under spec:")
		return nil
	}
	f, ok := d.fields(top, "", "spec")["spec"]
	if !ok {
		return nil
	}
	return d.spec(f.val)
}

func (d *decoder) spec(n *yaml.Node) *Spec {
	const path = "spec"
	// The reference's own Tutorial 1 example writes container and endpoint
	// in the singular; they are read as the plural with a warning.
	fs := d.fields(n, path, "containers", "endpoints", "volumes", "logExporters", "container", "endpoint")
	if fs == nil {
		return nil
	}
	for _, a := range [][2]string{{"container", "containers"}, {"endpoint", "endpoints"}} {
		alias, plural := a[0], a[1]
		f, ok := fs[alias]
		if !ok {
			continue
		}
		if _, both := fs[plural]; both {
			d.fail(f.key, path, "%q and %q are both given; write only %q", alias, plural, plural)
			continue
		}
		d.warn(f.key, path, "%q is read as %q; write %q", alias, plural, plural)
		fs[plural] = f
	}
	s := &Spec{}
	if f, ok := fs["containers"]; ok {
		for i, c := range d.list(f.val, path+".containers") {
			s.Containers = append(s.Containers, d.container(c, fmt.Sprintf("%s.containers[%d]", path, i)))
		}
		if len(s.Containers) == 0 && f.val.Kind == yaml.SequenceNode {
			d.fail(f.val, path+".containers", "needs at least one container")
		}
	} else {
		d.fail(n, path, "containers is required: a spec runs at least one container")
	}
	if f, ok := fs["endpoints"]; ok {
		for i, e := range d.list(f.val, path+".endpoints") {
			s.Endpoints = append(s.Endpoints, d.endpoint(e, fmt.Sprintf("%s.endpoints[%d]", path, i)))
		}
	}
	var targets []volumeTarget
	if f, ok := fs["volumes"]; ok {
		for i, v := range d.list(f.val, path+".volumes") {
			vol, target := d.volume(v, fmt.Sprintf("%s.volumes[%d]", path, i))
			s.Volumes = append(s.Volumes, vol)
			if target.path != "" {
				target.volume = vol.Name
				targets = append(targets, target)
			}
		}
	}
	for _, t := range targets {
		// target on a volume (seen in the wild) mounts it in every container.
		for i := range s.Containers {
			c := &s.Containers[i]
			if !slices.ContainsFunc(c.VolumeMounts, func(m VolumeMount) bool { return m.Name == t.volume }) {
				c.VolumeMounts = append(c.VolumeMounts, VolumeMount{Name: t.volume, MountPath: t.path, Line: t.line})
			}
		}
	}
	if f, ok := fs["logExporters"]; ok {
		s.LogExporters = d.logExporters(f.val, path+".logExporters")
	}
	return s
}

func (d *decoder) container(n *yaml.Node, path string) Container {
	c := Container{Line: n.Line}
	fs := d.fields(n, path, "name", "image", "command", "args", "env", "readinessProbe", "volumeMounts", "resources", "secrets")
	if fs == nil {
		return c
	}
	if v, ok := d.required(fs, n, path, "name", ""); ok {
		c.Name = d.name(v, path+".name")
	}
	if f, ok := fs["image"]; ok {
		if c.Image = d.str(f.val, path+".image"); c.Image == "" && !isNull(f.val) {
			d.fail(f.val, path+".image", "must name an image")
		}
	} else {
		d.fail(n, path, "image is required")
	}
	if f, ok := fs["command"]; ok {
		c.Command = d.strings(f.val, path+".command")
	}
	if f, ok := fs["args"]; ok {
		c.Args = d.strings(f.val, path+".args")
	}
	if f, ok := fs["env"]; ok {
		c.Env = d.env(f.val, path+".env")
	}
	if f, ok := fs["readinessProbe"]; ok {
		c.ReadinessProbe = d.probe(f.val, path+".readinessProbe")
	}
	if f, ok := fs["volumeMounts"]; ok {
		for i, m := range d.list(f.val, path+".volumeMounts") {
			c.VolumeMounts = append(c.VolumeMounts, d.mount(m, fmt.Sprintf("%s.volumeMounts[%d]", path, i)))
		}
	}
	if f, ok := fs["resources"]; ok {
		c.Resources = d.resources(f.val, path+".resources")
		c.Resources.Line = f.key.Line
	}
	if f, ok := fs["secrets"]; ok {
		for i, s := range d.list(f.val, path+".secrets") {
			c.Secrets = append(c.Secrets, d.secret(s, fmt.Sprintf("%s.secrets[%d]", path, i)))
		}
	}
	return c
}

func (d *decoder) env(n *yaml.Node, path string) map[string]string {
	if n.Kind != yaml.MappingNode {
		d.fail(n, path, "must be a mapping of NAME: value, not %s", describe(n))
		return nil
	}
	env := make(map[string]string, len(n.Content)/2)
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], deref(n.Content[i+1])
		switch {
		case !envRE.MatchString(k.Value):
			d.fail(k, path, "%q is not an environment variable name (letters, digits and _, not starting with a digit)", k.Value)
		case seen[k.Value] > 0:
			d.fail(k, path, "%q is given twice (first on line %d)", k.Value, seen[k.Value])
		}
		seen[k.Value] = k.Line
		if isNull(v) {
			env[k.Value] = "" // "NAME:" sets an empty variable
			continue
		}
		env[k.Value] = d.str(v, path+"."+k.Value)
	}
	return env
}

func (d *decoder) probe(n *yaml.Node, path string) *Probe {
	p := &Probe{}
	fs := d.fields(n, path, "port", "path")
	if fs == nil {
		return p
	}
	if v, ok := d.required(fs, n, path, "port", ""); ok {
		p.Port = d.port(v, path+".port")
	}
	if v, ok := d.required(fs, n, path, "path", ""); ok {
		if p.Path = d.str(v, path+".path"); p.Path != "" && !strings.HasPrefix(p.Path, "/") {
			d.fail(v, path+".path", "%q must start with /", p.Path)
		}
	}
	return p
}

func (d *decoder) mount(n *yaml.Node, path string) VolumeMount {
	m := VolumeMount{Line: n.Line}
	fs := d.fields(n, path, "name", "mountPath")
	if fs == nil {
		return m
	}
	if v, ok := d.required(fs, n, path, "name", ": the volume to mount"); ok {
		m.Name = d.str(v, path+".name")
	}
	if v, ok := d.required(fs, n, path, "mountPath", ""); ok {
		m.MountPath = d.absPath(v, path+".mountPath")
	}
	return m
}

func (d *decoder) resources(n *yaml.Node, path string) *Resources {
	r := &Resources{Line: n.Line}
	fs := d.fields(n, path, "requests", "limits")
	if fs == nil {
		return r
	}
	if f, ok := fs["requests"]; ok {
		r.Requests = d.resourceList(f.val, path+".requests")
	}
	if f, ok := fs["limits"]; ok {
		r.Limits = d.resourceList(f.val, path+".limits")
	}
	return r
}

func (d *decoder) resourceList(n *yaml.Node, path string) ResourceList {
	var l ResourceList
	fs := d.fields(n, path, "memory", "cpu", "nvidia.com/gpu")
	if fs == nil {
		return l
	}
	if f, ok := fs["memory"]; ok {
		p := path + ".memory"
		if l.Memory = d.quantity(f.val, p); !l.Memory.IsZero() && !l.Memory.Whole() {
			d.fail(f.val, p, "%s is not a whole number of bytes", l.Memory)
		}
	}
	if f, ok := fs["cpu"]; ok {
		p := path + ".cpu"
		if l.CPU = d.quantity(f.val, p); !l.CPU.IsZero() && l.CPU.Milli() == 0 {
			d.fail(f.val, p, "must be more than 0 (e.g. 0.5 or 500m)")
		}
	}
	if f, ok := fs["nvidia.com/gpu"]; ok {
		p := path + ".nvidia.com/gpu"
		if l.GPU = d.quantity(f.val, p); !l.GPU.IsZero() && !l.GPU.Whole() {
			d.fail(f.val, p, "%s is not a whole number of GPUs", l.GPU)
		}
	}
	return l
}

func (d *decoder) secret(n *yaml.Node, path string) Secret {
	s := Secret{Line: n.Line}
	fs := d.fields(n, path, "snowflakeSecret", "secretKeyRef", "envVarName", "directoryPath")
	if fs == nil {
		return s
	}
	if f, ok := fs["snowflakeSecret"]; ok {
		p := path + ".snowflakeSecret"
		if f.val.Kind == yaml.MappingNode {
			// The long form: snowflakeSecret: {objectName: NAME}.
			if obj, ok := d.fields(f.val, p, "objectName")["objectName"]; ok {
				s.SnowflakeSecret = d.str(obj.val, p+".objectName")
			} else {
				d.fail(f.val, p, "objectName is required")
			}
		} else {
			s.SnowflakeSecret = d.str(f.val, p)
		}
	} else {
		d.fail(n, path, "snowflakeSecret is required: the secret object to pass")
	}
	if f, ok := fs["secretKeyRef"]; ok {
		s.SecretKeyRef = d.str(f.val, path+".secretKeyRef")
	}
	if f, ok := fs["envVarName"]; ok {
		if s.EnvVarName = d.str(f.val, path+".envVarName"); s.EnvVarName != "" && !envRE.MatchString(s.EnvVarName) {
			d.fail(f.val, path+".envVarName", "%q is not an environment variable name", s.EnvVarName)
		}
	}
	if f, ok := fs["directoryPath"]; ok {
		s.DirectoryPath = d.absPath(f.val, path+".directoryPath")
	}
	switch {
	case s.EnvVarName != "" && s.DirectoryPath != "":
		d.fail(n, path, "give envVarName or directoryPath, not both")
	case s.EnvVarName == "" && s.DirectoryPath == "":
		d.fail(n, path, "needs envVarName (one key as a variable) or directoryPath (every key as a file)")
	case s.SecretKeyRef != "" && s.EnvVarName == "":
		d.fail(fs["secretKeyRef"].key, path, "secretKeyRef goes only with envVarName; a directoryPath receives every key")
	}
	return s
}

func (d *decoder) endpoint(n *yaml.Node, path string) Endpoint {
	e := Endpoint{Line: n.Line, Protocol: ProtocolHTTP}
	fs := d.fields(n, path, "name", "port", "public", "protocol")
	if fs == nil {
		return e
	}
	if v, ok := d.required(fs, n, path, "name", ""); ok {
		e.Name = d.name(v, path+".name")
	}
	if v, ok := d.required(fs, n, path, "port", ""); ok {
		e.Port = d.port(v, path+".port")
	}
	if f, ok := fs["public"]; ok {
		e.Public = d.boolean(f.val, path+".public")
	}
	if f, ok := fs["protocol"]; ok {
		p := d.str(f.val, path+".protocol")
		switch strings.ToUpper(p) {
		case ProtocolTCP, ProtocolHTTP, ProtocolHTTPS:
			e.Protocol = strings.ToUpper(p)
		default:
			if p != "" {
				d.fail(f.val, path+".protocol", "%q is not a protocol: TCP, HTTP or HTTPS", p)
			}
		}
	}
	if e.Public && e.Protocol == ProtocolTCP {
		d.fail(n, path, "a public endpoint must be HTTP or HTTPS, not TCP")
	}
	return e
}

type volumeTarget struct {
	volume, path string
	line         int
}

var stageRE = regexp.MustCompile(`^@("[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)(\.("[^"]+"|[A-Za-z_][A-Za-z0-9_$]*)){0,2}(/[^/]+)*/?$`)

// stage checks a stage or stage folder; a folder may not climb out of its
// stage with "..".
func (d *decoder) stage(n *yaml.Node, path, s string) {
	if !stageRE.MatchString(s) {
		d.fail(n, path, "%q is not a stage or stage folder such as @my_stage or @db.schema.stage/dir", s)
		return
	}
	_, dir := Volume{Source: s}.Stage()
	for _, part := range strings.Split(dir, "/") {
		if part == "." || part == ".." {
			d.fail(n, path, "%q: a stage folder is a path down into the stage, without %q", s, part)
			return
		}
	}
}

func (d *decoder) volume(n *yaml.Node, path string) (Volume, volumeTarget) {
	v := Volume{Line: n.Line}
	var target volumeTarget
	fs := d.fields(n, path, "name", "source", "size", "uid", "gid", "stageConfig", "target")
	if fs == nil {
		return v, target
	}
	if val, ok := d.required(fs, n, path, "name", ""); ok {
		v.Name = d.name(val, path+".name")
	}
	f, hasSource := fs["source"]
	if hasSource {
		v.Source = d.str(f.val, path+".source")
		switch {
		case v.Source == SourceLocal, v.Source == SourceMemory, v.Source == SourceStage:
		case strings.HasPrefix(v.Source, "@"):
			d.stage(f.val, path+".source", v.Source)
		case v.Source != "":
			d.fail(f.val, path+".source", "%q is not a volume source: local, memory, \"@stage\" (quoted) or stage with stageConfig", v.Source)
		}
	} else {
		d.fail(n, path, "source is required: local, memory, \"@stage\" or stage")
	}
	if f, ok := fs["size"]; ok {
		p := path + ".size"
		if v.Size = d.quantity(f.val, p); !v.Size.IsZero() && (!v.Size.Whole() || v.Size.Value() == 0) {
			d.fail(f.val, p, "%s is not a positive whole number of bytes", v.Size)
		}
	}
	v.UID, v.GID = d.owner(fs, path)
	if f, ok := fs["stageConfig"]; ok {
		v.StageConfig = d.stageConfig(f.val, path+".stageConfig")
	}
	if f, ok := fs["target"]; ok {
		target = volumeTarget{path: d.absPath(f.val, path+".target"), line: f.key.Line}
		d.warn(f.key, path, "target is not in the reference; read as a volumeMount at %s in every container", target.path)
	}
	if !hasSource {
		return v, target
	}
	kind := v.Kind()
	switch {
	case kind == SourceMemory && v.Size.IsZero():
		d.fail(n, path, "a memory volume needs a size, e.g. size: 2Gi")
	case kind != SourceMemory && !v.Size.IsZero():
		d.fail(fs["size"].key, path, "size is only for memory volumes")
	}
	if kind != SourceStage {
		for _, k := range []string{"uid", "gid"} {
			if f, ok := fs[k]; ok {
				d.fail(f.key, path, "%s is only for stage volumes", k)
			}
		}
	}
	switch {
	case v.Source == SourceStage && v.StageConfig == nil:
		d.fail(n, path, "source: stage needs stageConfig with the stage's name")
	case v.Source != SourceStage && v.StageConfig != nil:
		d.fail(fs["stageConfig"].key, path, "stageConfig goes only with source: stage")
	}
	return v, target
}

func (d *decoder) stageConfig(n *yaml.Node, path string) *StageConfig {
	c := &StageConfig{}
	fs := d.fields(n, path, "name", "uid", "gid")
	if fs == nil {
		return c
	}
	if f, ok := fs["name"]; ok {
		c.Name = d.str(f.val, path+".name")
		if c.Name != "" {
			d.stage(f.val, path+".name", c.Name)
		}
	} else {
		d.fail(n, path, "name is required: the stage, e.g. \"@my_stage\"")
	}
	c.UID, c.GID = d.owner(fs, path)
	return c
}

func (d *decoder) logExporters(n *yaml.Node, path string) *LogExporters {
	l := &LogExporters{}
	fs := d.fields(n, path, "eventTableConfig")
	if fs == nil {
		return l
	}
	f, ok := fs["eventTableConfig"]
	if !ok {
		return l
	}
	p := path + ".eventTableConfig"
	l.EventTableConfig = &EventTableConfig{}
	ec := d.fields(f.val, p, "logLevel")
	if lv, ok := ec["logLevel"]; ok {
		level := strings.ToUpper(d.str(lv.val, p+".logLevel"))
		switch level {
		case LogInfo, LogError, LogNone:
			l.EventTableConfig.LogLevel = level
		default:
			d.fail(lv.val, p+".logLevel", "%q is not a log level: INFO, ERROR or NONE", lv.val.Value)
		}
	} else if ec != nil {
		d.fail(f.val, p, "logLevel is required")
	}
	return l
}

// validate applies the rules that span fields: unique names, mounts that
// name a volume, GPU requests and limits that agree.
func (d *decoder) validate(s *Spec) {
	unique := func(kind string, names []string, lines []int, path string) {
		first := map[string]int{}
		for i, n := range names {
			if n == "" {
				continue
			}
			if l, dup := first[n]; dup {
				d.errs = append(d.errs, &Problem{File: d.file, Line: lines[i], Path: fmt.Sprintf("%s[%d]", path, i),
					Msg: fmt.Sprintf("%s name %q is already used on line %d", kind, n, l)})
				continue
			}
			first[n] = lines[i]
		}
	}
	var names []string
	var lines []int
	for _, c := range s.Containers {
		names, lines = append(names, c.Name), append(lines, c.Line)
	}
	unique("container", names, lines, "spec.containers")
	names, lines = nil, nil
	for _, e := range s.Endpoints {
		names, lines = append(names, e.Name), append(lines, e.Line)
	}
	unique("endpoint", names, lines, "spec.endpoints")
	names, lines = nil, nil
	for _, v := range s.Volumes {
		names, lines = append(names, v.Name), append(lines, v.Line)
	}
	unique("volume", names, lines, "spec.volumes")

	for i, c := range s.Containers {
		path := fmt.Sprintf("spec.containers[%d]", i)
		for j, m := range c.VolumeMounts {
			if _, ok := s.Volume(m.Name); !ok && m.Name != "" {
				d.errs = append(d.errs, &Problem{File: d.file, Line: m.Line, Path: fmt.Sprintf("%s.volumeMounts[%d]", path, j),
					Msg: fmt.Sprintf("volume %q is not declared in spec.volumes", m.Name)})
			}
		}
		if r := c.Resources; r != nil {
			d.checkResources(r, path+".resources")
		}
	}
}

func (d *decoder) checkResources(r *Resources, path string) {
	at := func(msg string, args ...any) {
		d.errs = append(d.errs, &Problem{File: d.file, Line: r.Line, Path: path, Msg: fmt.Sprintf(msg, args...)})
	}
	req, lim := r.Requests.GPU, r.Limits.GPU
	switch {
	case !req.IsZero() && lim.IsZero():
		at("a GPU request (%s) needs a limit of the same amount", req)
	case req.IsZero() && !lim.IsZero():
		at("a GPU limit (%s) needs a request of the same amount", lim)
	case !req.IsZero() && req.Cmp(lim) != 0:
		at("the GPU request (%s) and limit (%s) must be equal", req, lim)
	}
	if m, l := r.Requests.Memory, r.Limits.Memory; !m.IsZero() && !l.IsZero() && m.Cmp(l) > 0 {
		at("the memory request (%s) is above its limit (%s)", m, l)
	}
	if c, l := r.Requests.CPU, r.Limits.CPU; !c.IsZero() && !l.IsZero() && c.Cmp(l) > 0 {
		at("the CPU request (%s) is above its limit (%s)", c, l)
	}
}
