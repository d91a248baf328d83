// Package auth decides who may call: bearer tokens from a file, JWTs
// checked against a JWKS file, client certificates, and identities passed
// by a trusted proxy, each granting scopes (predict, metrics, admin). The
// files are read again when they change, and TLS certificates with them,
// so no credential needs a restart to rotate.
package auth

import (
	"fmt"
	"strings"

	"github.com/modelserve/modelserve/model"
)

// Scopes a principal may hold.
const (
	// ScopePredict allows the prediction and polling routes; with a
	// target (predict:iris) only a model or function of that name.
	ScopePredict = "predict"
	// ScopeMetrics allows /metrics.
	ScopeMetrics = "metrics"
	// ScopeAdmin allows what manages the server: the debug listener, and
	// model management.
	ScopeAdmin = "admin"
)

// Scope is one grant: a name and, for predict, an optional target.
type Scope struct {
	Name   string
	Target string
}

func (s Scope) String() string {
	if s.Target == "" {
		return s.Name
	}
	return s.Name + ":" + s.Target
}

// ParseScopes reads a comma list of scopes: predict, predict:NAME,
// metrics, admin.
func ParseScopes(list string) ([]Scope, error) {
	var out []Scope
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		s, err := parseScope(f)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("scopes %q: name at least one of predict, predict:NAME, metrics, admin", list)
	}
	return out, nil
}

func parseScope(f string) (Scope, error) {
	name, target, _ := strings.Cut(f, ":")
	switch name {
	case ScopePredict:
		if target != "" {
			// A model or a function name: both follow the model's rule.
			if err := model.CheckName(model.ModelName, target); err != nil {
				return Scope{}, fmt.Errorf("scope %q: %w", f, err)
			}
		}
	case ScopeMetrics, ScopeAdmin:
		if target != "" {
			return Scope{}, fmt.Errorf("scope %q: only predict takes a target", f)
		}
	default:
		return Scope{}, fmt.Errorf("unknown scope %q (have predict, predict:NAME, metrics, admin)", f)
	}
	return Scope{Name: name, Target: target}, nil
}

// Principal is who a request comes from.
type Principal struct {
	Name   string
	Scopes []Scope
	all    bool // auth is off: everything is allowed
}

// Anonymous is the principal of every request when no auth is configured.
var anonymous = Principal{Name: "anonymous", all: true}

// Need is what a route requires: a scope, and for predict the model and
// function called.
type Need struct {
	Scope           string
	Model, Function string
}

func (n Need) String() string {
	if n.Scope == ScopePredict && n.Model != "" {
		return ScopePredict + ":" + n.Model
	}
	return n.Scope
}

// Allows reports whether p holds a scope that covers n; an empty need is
// met by any principal.
func (p Principal) Allows(n Need) bool {
	if p.all || n.Scope == "" {
		return true
	}
	for _, s := range p.Scopes {
		if s.Name != n.Scope {
			continue
		}
		if s.Target == "" || s.Target == n.Model || s.Target == n.Function {
			return true
		}
	}
	return false
}
