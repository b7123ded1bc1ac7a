package check

import (
	"io"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestAlertRulesUseExportedMetrics: every esign_evidence_* series an alert reads is one
// the binary exports from start-up, before any call: a renamed metric or label value would
// silently never fire, and a counter series that first appears at 1 gives increase() and
// rate() nothing to compare. promtool checks the syntax and the rule tests
// (`make deploy-check`).
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	raw, err := os.ReadFile("../prometheus/esign-evidence.rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `json:"alert"`
				Expr  string `json:"expr"`
			} `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.Unmarshal(raw, &rules); err != nil {
		t.Fatal(err)
	}
	bin := theBinary(t)
	exported := string(scrape(t, bin.path))
	selector := regexp.MustCompile(`\b(esign_evidence_[a-z_]+)\b(\{([^}]*)\})?`)
	matcher := regexp.MustCompile(`([a-z_]+)\s*=\s*"([^"]*)"`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, m := range selector.FindAllStringSubmatch(r.Expr, -1) {
				n++
				name, want := m[1], matcher.FindAllStringSubmatch(m[3], -1)
				if !strings.Contains(exported, "# TYPE "+name+" ") {
					t.Errorf("alert %s reads %s, which the binary does not export at start-up", r.Alert, name)
					continue
				}
				if !slices.ContainsFunc(strings.Split(exported, "\n"), func(line string) bool {
					if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
						return false
					}
					for _, kv := range want {
						if !strings.Contains(line, kv[1]+`="`+kv[2]+`"`) {
							return false
						}
					}
					return true
				}) {
					t.Errorf("alert %s reads %s, which has no series at start-up", r.Alert, m[0])
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no metric found in the rules")
	}
}

// scrape starts the binary in demo mode and returns its /metrics before any call.
func scrape(t *testing.T, bin string) []byte {
	t.Helper()
	d := startDemoAll(t, bin)
	resp, err := http.Get("http://" + d.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}
