package admission

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"path"
	"strconv"
	"strings"
)

// unlimited is where cgroup v1 reports "no limit" (a page-rounded 2^63).
const unlimited = int64(1) << 62

// MemoryLimit is how much memory this process may use: the tightest limit
// of its memory cgroup and the cgroups above it (v2 or v1), else physical
// memory. source says where the number came from.
func MemoryLimit() (limit int64, source string, err error) {
	return memoryLimit(os.DirFS("/"))
}

func memoryLimit(root fs.FS) (int64, string, error) {
	if limit, file, ok := cgroupLimit(root); ok {
		return limit, "cgroup " + file, nil
	}
	total, err := memTotal(root)
	if err != nil {
		return 0, "", fmt.Errorf("reading the memory limit: %w", err)
	}
	return total, "physical memory", nil
}

// cgroupLimit walks from the process's memory cgroup up to the root and
// returns the tightest limit set on the way.
func cgroupLimit(root fs.FS) (int64, string, bool) {
	b, err := fs.ReadFile(root, "proc/self/cgroup")
	if err != nil {
		return 0, "", false
	}
	best, bestFile := int64(-1), ""
	consider := func(file string, parse func(string) (int64, bool)) {
		raw, err := fs.ReadFile(root, file)
		if err != nil {
			return
		}
		if v, ok := parse(strings.TrimSpace(string(raw))); ok && (best < 0 || v < best) {
			best, bestFile = v, "/"+file
		}
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		// hierarchy-id:controllers:path
		parts := strings.SplitN(line, ":", 3)
		if len(parts) != 3 {
			continue
		}
		var base, name string
		var parse func(string) (int64, bool)
		switch {
		case parts[0] == "0" && parts[1] == "":
			base, name, parse = "sys/fs/cgroup", "memory.max", parseV2
		case hasController(parts[1], "memory"):
			base, name, parse = "sys/fs/cgroup/memory", "memory.limit_in_bytes", parseV1
		default:
			continue
		}
		// Inside a container the cgroup root is often mounted at the
		// process's own cgroup, so the path may not exist under base: the
		// files at base itself then belong to the process.
		for dir := path.Clean(parts[2]); ; dir = path.Dir(dir) {
			consider(path.Join(base, strings.TrimPrefix(dir, "/"), name), parse)
			if dir == "/" || dir == "." {
				break
			}
		}
	}
	return best, bestFile, best >= 0
}

func hasController(list, name string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == name {
			return true
		}
	}
	return false
}

func parseV2(s string) (int64, bool) {
	if s == "max" {
		return 0, false
	}
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0
}

func parseV1(s string) (int64, bool) {
	v, err := strconv.ParseInt(s, 10, 64)
	return v, err == nil && v > 0 && v < unlimited
}

func memTotal(root fs.FS) (int64, error) {
	b, err := fs.ReadFile(root, "proc/meminfo")
	if err != nil {
		return 0, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemTotal:" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0, fmt.Errorf("MemTotal %q: %w", fields[1], err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no MemTotal in /proc/meminfo")
}

// ResidentBytes is the process's resident memory now.
func ResidentBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, err
	}
	fields := strings.Fields(string(b))
	if len(fields) < 2 {
		return 0, fmt.Errorf("unexpected /proc/self/statm: %q", b)
	}
	pages, err := strconv.ParseInt(fields[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

// PeakResidentBytes is the most memory this process has held resident
// (VmHWM). Unlike getrusage's maximum, it starts afresh at exec, so a
// child does not inherit its parent's peak.
func PeakResidentBytes() (int64, error) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("unexpected VmHWM line %q", line)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("no VmHWM in /proc/self/status")
}

// DefaultBudget is the share of the memory still free once the model is
// loaded (limit minus resident) that requests in flight may hold: the rest
// is headroom for ONNX Runtime's working memory, the Go heap and buffers.
func DefaultBudget(limit, resident int64, fraction float64) int64 {
	free := limit - resident
	if free <= 0 {
		return 0
	}
	return int64(float64(free) * fraction)
}
