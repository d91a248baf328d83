package model

import (
	"fmt"
	"strings"
)

// NameKind is what a name names. Every kind draws on one safe set: ASCII
// letters, digits, '.', '_' and '-', a letter or digit first, at most 128
// characters. Such a name is a single path element (never "." or "..",
// never a separator), a single URL segment, a metric label value and a
// single word of a command line, so a name checked here is safe wherever
// it goes. Some kinds narrow the set further for where else they must fit.
type NameKind int

const (
	ModelName NameKind = iota
	VersionName
	// FunctionName is also a SQL identifier: a letter first, then letters,
	// digits and '_'.
	FunctionName
	// ServiceName and JobName also name pods, directories and Kubernetes
	// objects: a DNS label (lowercase letters, digits and '-', a letter
	// first, no '-' last, at most 63 characters).
	ServiceName
	JobName
	// ObjectName is a spec's container, endpoint or volume: a DNS label.
	ObjectName
	// KeyName is a secret's key, which becomes a file's name.
	KeyName
)

func (k NameKind) String() string {
	switch k {
	case ModelName:
		return "model name"
	case VersionName:
		return "version"
	case FunctionName:
		return "function name"
	case ServiceName:
		return "service name"
	case JobName:
		return "job name"
	case KeyName:
		return "secret key"
	}
	return "name"
}

// MaxNameLength bounds every name; DNS labels are shorter still.
const (
	MaxNameLength  = 128
	maxLabelLength = 63
)

// CheckName is the one check of the names users give: it accepts s as a
// name of the given kind, or says why not.
func CheckName(kind NameKind, s string) error {
	if s == "" {
		return fmt.Errorf("the %s is empty", kind)
	}
	limit := MaxNameLength
	if kind.isLabel() {
		limit = maxLabelLength
	}
	if len(s) > limit {
		return fmt.Errorf("%s %q is %d characters long; the limit is %d", kind, s, len(s), limit)
	}
	for i := 0; i < len(s); i++ {
		if !kind.allows(s[i], i == 0) {
			return fmt.Errorf("%s %q %s", kind, s, kind.rule())
		}
	}
	if kind.isLabel() && s[len(s)-1] == '-' {
		return fmt.Errorf("%s %q %s", kind, s, kind.rule())
	}
	return nil
}

func (k NameKind) isLabel() bool { return k == ServiceName || k == JobName || k == ObjectName }

func (k NameKind) allows(c byte, first bool) bool {
	lower, upper, digit := c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9'
	switch {
	case k.isLabel():
		return lower || !first && (digit || c == '-')
	case k == FunctionName:
		return lower || upper || !first && (digit || c == '_')
	}
	return lower || upper || digit || !first && (c == '.' || c == '_' || c == '-')
}

func (k NameKind) rule() string {
	switch {
	case k.isLabel():
		return "must be lowercase letters, digits and '-', start with a letter and end with a letter or digit"
	case k == FunctionName:
		return "must start with a letter and hold only letters, digits and underscores"
	}
	return "must start with a letter or digit and hold only letters, digits, '.', '_' and '-'"
}

// LabelFrom makes a DNS label of a free-form word (a file's name, say):
// lowercased, with '_', '.' and spaces turned into '-'. The result must
// still pass CheckName.
func LabelFrom(s string) string {
	s = strings.ToLower(s)
	return strings.Map(func(r rune) rune {
		if r == '_' || r == '.' || r == ' ' {
			return '-'
		}
		return r
	}, s)
}
