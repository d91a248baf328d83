package spec

import (
	"bytes"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// File is a whole spec file: everything lives under the top-level "spec".
type File struct {
	Spec Spec `yaml:"spec"`
}

// Spec describes a service or a job: the containers of one instance, the
// endpoints it exposes, the volumes its containers share and how its logs
// are kept.
type Spec struct {
	Containers   []Container   `yaml:"containers"`
	Endpoints    []Endpoint    `yaml:"endpoints,omitempty"`
	Volumes      []Volume      `yaml:"volumes,omitempty"`
	LogExporters *LogExporters `yaml:"logExporters,omitempty"`
}

// Container is one OCI container of an instance. Command replaces the
// image's entrypoint and Args its CMD.
type Container struct {
	Name           string            `yaml:"name"`
	Image          string            `yaml:"image"`
	Command        []string          `yaml:"command,omitempty"`
	Args           []string          `yaml:"args,omitempty"`
	Env            map[string]string `yaml:"env,omitempty"`
	ReadinessProbe *Probe            `yaml:"readinessProbe,omitempty"`
	VolumeMounts   []VolumeMount     `yaml:"volumeMounts,omitempty"`
	Resources      *Resources        `yaml:"resources,omitempty"`
	Secrets        []Secret          `yaml:"secrets,omitempty"`

	Line int `yaml:"-"` // where the container starts in its file
}

// Probe is an HTTP GET that must answer 200 before traffic is sent.
type Probe struct {
	Port int    `yaml:"port"`
	Path string `yaml:"path"`
}

// VolumeMount places a volume of the spec at a path in a container.
type VolumeMount struct {
	Name      string `yaml:"name"`
	MountPath string `yaml:"mountPath"`

	Line int `yaml:"-"`
}

// Resources are what a container is guaranteed (requests) and may not
// exceed (limits).
type Resources struct {
	Requests ResourceList `yaml:"requests,omitempty"`
	Limits   ResourceList `yaml:"limits,omitempty"`

	Line int `yaml:"-"`
}

// ResourceList holds memory in bytes, CPU in vCPUs and whole GPUs.
type ResourceList struct {
	Memory Quantity `yaml:"memory,omitempty"`
	GPU    Quantity `yaml:"nvidia.com/gpu,omitempty"`
	CPU    Quantity `yaml:"cpu,omitempty"`
}

// IsZero lets empty lists drop out of the normalized spec.
func (r ResourceList) IsZero() bool { return r.Memory.IsZero() && r.GPU.IsZero() && r.CPU.IsZero() }

// Secret passes a secret object to a container, either one key as an
// environment variable or every key as a file in a directory.
type Secret struct {
	SnowflakeSecret string `yaml:"snowflakeSecret"`
	SecretKeyRef    string `yaml:"secretKeyRef,omitempty"`
	EnvVarName      string `yaml:"envVarName,omitempty"`
	DirectoryPath   string `yaml:"directoryPath,omitempty"`

	Line int `yaml:"-"`
}

// Endpoint names a port an instance listens on.
type Endpoint struct {
	Name     string `yaml:"name"`
	Port     int    `yaml:"port"`
	Public   bool   `yaml:"public"`
	Protocol string `yaml:"protocol"`

	Line int `yaml:"-"`
}

// Endpoint protocols.
const (
	ProtocolTCP   = "TCP"
	ProtocolHTTP  = "HTTP"
	ProtocolHTTPS = "HTTPS"
)

// Volume is storage the containers of one instance share.
type Volume struct {
	Name        string       `yaml:"name"`
	Source      string       `yaml:"source"`
	Size        Quantity     `yaml:"size,omitempty"`
	UID         *int         `yaml:"uid,omitempty"`
	GID         *int         `yaml:"gid,omitempty"`
	StageConfig *StageConfig `yaml:"stageConfig,omitempty"`

	Line int `yaml:"-"`
}

// StageConfig is the long form of a stage volume (source: stage).
type StageConfig struct {
	Name string `yaml:"name"`
	UID  *int   `yaml:"uid,omitempty"`
	GID  *int   `yaml:"gid,omitempty"`
}

// Volume sources.
const (
	SourceLocal  = "local"
	SourceMemory = "memory"
	SourceStage  = "stage"
)

// Kind is local, memory or stage, whichever way the source is written.
func (v Volume) Kind() string {
	if strings.HasPrefix(v.Source, "@") {
		return SourceStage
	}
	return v.Source
}

// Stage splits a stage volume's source into the stage's name (without the
// @) and the folder inside it ("" for the whole stage).
func (v Volume) Stage() (name, dir string) {
	src := v.Source
	if v.StageConfig != nil {
		src = v.StageConfig.Name
	}
	src = strings.TrimPrefix(src, "@")
	name, dir, _ = strings.Cut(src, "/")
	return name, strings.Trim(dir, "/")
}

// Owner is the uid and gid files of a stage volume belong to, in either
// place the spec may give them.
func (v Volume) Owner() (uid, gid *int) {
	uid, gid = v.UID, v.GID
	if c := v.StageConfig; c != nil {
		if c.UID != nil {
			uid = c.UID
		}
		if c.GID != nil {
			gid = c.GID
		}
	}
	return uid, gid
}

// LogExporters says which container output is kept.
type LogExporters struct {
	EventTableConfig *EventTableConfig `yaml:"eventTableConfig,omitempty"`
}

// EventTableConfig holds the log level.
type EventTableConfig struct {
	LogLevel string `yaml:"logLevel"`
}

// Log levels: INFO keeps all output, ERROR only standard error, NONE nothing.
const (
	LogInfo  = "INFO"
	LogError = "ERROR"
	LogNone  = "NONE"
)

// LogLevel is the spec's log level, or "" when it does not say.
func (s *Spec) LogLevel() string {
	if s.LogExporters == nil || s.LogExporters.EventTableConfig == nil {
		return ""
	}
	return s.LogExporters.EventTableConfig.LogLevel
}

// Volume finds a volume by name.
func (s *Spec) Volume(name string) (Volume, bool) {
	for _, v := range s.Volumes {
		if v.Name == name {
			return v, true
		}
	}
	return Volume{}, false
}

// Marshal writes the spec in its normalized form: defaults filled in,
// aliases resolved, fields in the reference's order.
func (s *Spec) Marshal() ([]byte, error) {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(File{Spec: *s}); err != nil {
		return nil, fmt.Errorf("writing the spec: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("writing the spec: %w", err)
	}
	return buf.Bytes(), nil
}

// MarshalYAML writes a quantity as the user wrote it.
func (q Quantity) MarshalYAML() (any, error) {
	// A plain scalar: "1" stays a number, "2Gi" a string, as written.
	return &yaml.Node{Kind: yaml.ScalarNode, Value: q.text}, nil
}
