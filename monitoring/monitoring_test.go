package monitoring

import (
	"encoding/json"
	"os/exec"
	"strings"
	"testing"
)

// TestRules_passPromtool: the rule file is valid, and its unit tests
// (each alert fires on the series that should raise it, and only those)
// pass.
func TestRules_passPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool is needed (Debian package prometheus; make test installs it)")
	}
	for _, args := range [][]string{{"check", "rules", "prometheus-rules.yml"}, {"test", "rules", "prometheus-rules-test.yml"}} {
		out, err := exec.Command(promtool, args...).CombinedOutput()
		if err != nil || !strings.Contains(string(out), "SUCCESS") {
			t.Errorf("promtool %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// panel is what the tests read of a dashboard panel.
type panel struct {
	ID      int
	Title   string
	GridPos struct{ H, W int }
	Targets []struct{ Expr, RefID string }
}

// panels reads the dashboard's panels.
func panels(t *testing.T) []panel {
	t.Helper()
	var d struct {
		Title, UID string
		Panels     []panel
	}
	if err := json.Unmarshal(Dashboard(), &d); err != nil {
		t.Fatalf("the dashboard is not JSON: %v", err)
	}
	if d.Title == "" || d.UID == "" || len(d.Panels) == 0 {
		t.Fatalf("the dashboard has no title, uid or panels: %+v", d)
	}
	return d.Panels
}

func TestDashboard_panelsAreWhole(t *testing.T) {
	ids := map[int]bool{}
	for _, p := range panels(t) {
		if ids[p.ID] || p.Title == "" || p.GridPos.H == 0 || p.GridPos.W == 0 || len(p.Targets) == 0 {
			t.Errorf("panel %d %q: a repeated id, no title, no place or no query", p.ID, p.Title)
		}
		ids[p.ID] = true
		for _, q := range p.Targets {
			if !strings.Contains(q.Expr, "modelserve_") || q.RefID == "" {
				t.Errorf("panel %q: query %q names no modelserve metric or has no refId", p.Title, q.Expr)
			}
		}
	}
}
