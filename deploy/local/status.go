package local

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/modelserve/modelserve/internal/atomicfile"
	"github.com/modelserve/modelserve/model"
)

// Status is what modelserve service status shows, written by the running
// service to its state directory on every change.
type Status struct {
	Service   string           `json:"service"`
	Spec      string           `json:"spec"`
	PID       int              `json:"pid"`
	State     string           `json:"state"` // starting, running, draining, stopped
	Started   time.Time        `json:"started"`
	Updated   time.Time        `json:"updated"`
	Endpoints []EndpointStatus `json:"endpoints"`
	Instances []InstanceStatus `json:"instances"`

	// Running is false when no process holds the service's lock: the
	// status is what the last run left.
	Running bool `json:"-"`
}

// EndpointStatus is one endpoint's listener.
type EndpointStatus struct {
	Name     string `json:"name"`
	Protocol string `json:"protocol"`
	Public   bool   `json:"public"`
	Address  string `json:"address"`
	Served   int64  `json:"served"`
}

// InstanceStatus is one instance: ready when every container runs and
// passes its readiness probe.
type InstanceStatus struct {
	Index      int               `json:"index"`
	Ready      bool              `json:"ready"`
	Containers []ContainerStatus `json:"containers"`
}

// ContainerStatus is one container of an instance.
type ContainerStatus struct {
	Name     string `json:"name"`
	Runs     string `json:"runs"` // modelserve or podman
	PID      int    `json:"pid,omitempty"`
	State    string `json:"state"` // starting, running, restarting, exited, stopped
	Ready    bool   `json:"ready"`
	Restarts int    `json:"restarts"`
	LastExit string `json:"lastExit,omitempty"`
	Port     int    `json:"port,omitempty"` // on this machine
	Log      string `json:"log"`
}

const (
	statusFile = "status.json"
	lockFile   = "lock"
)

// ServiceDir is where a service keeps its state and logs.
func ServiceDir(stateDir, name string) string { return filepath.Join(stateDir, "services", name) }

// JobDir is where a job run keeps its state and logs.
func JobDir(stateDir, name string) string { return filepath.Join(stateDir, "jobs", name) }

// DefaultStateDir is $XDG_STATE_HOME/modelserve, else ~/.local/state/modelserve.
func DefaultStateDir() string {
	if d := os.Getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "modelserve")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".local", "state", "modelserve")
	}
	return filepath.Join(os.TempDir(), "modelserve-state")
}

func writeStatus(dir string, s *Status) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return atomicfile.Write(filepath.Join(dir, statusFile), 0o644, func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// ReadStatus reads a service's status from another process.
func ReadStatus(stateDir, name string) (*Status, error) {
	if err := model.CheckName(model.ServiceName, name); err != nil {
		return nil, err
	}
	dir := ServiceDir(stateDir, name)
	b, err := os.ReadFile(filepath.Join(dir, statusFile))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no service %q has run here (looked in %s)", name, dir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading the status of %s: %w", name, err)
	}
	var s Status
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("reading the status of %s: %w", name, err)
	}
	s.Running = locked(filepath.Join(dir, lockFile))
	if !s.Running && s.State != "stopped" {
		s.State = "stopped (the service's process is gone)"
	}
	return &s, nil
}

// lock takes the service's lock: one running copy per name. It is held
// until the process exits.
func lock(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockFile), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, errors.New("it is already running")
	}
	return f, nil
}

func locked(path string) bool {
	f, err := os.Open(path)
	if err != nil {
		return false
	}
	defer f.Close()
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_SH|syscall.LOCK_NB); err != nil {
		return true
	}
	syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
	return false
}
