package check

import (
	"bytes"
	"io"
	"net/http"
	"os"
	"regexp"
	"testing"

	"sigs.k8s.io/yaml"
)

// TestAlertRulesUseExportedMetrics: every esign_evidence_* metric an alert reads is one
// the binary exports (a renamed metric would silently never fire). promtool checks the
// syntax and the rule tests (`make deploy-check`).
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
	exported := scrape(t, bin.path)
	name := regexp.MustCompile(`\besign_evidence_[a-z_]+\b`)
	n := 0
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			for _, m := range name.FindAllString(r.Expr, -1) {
				n++
				if !bytes.Contains(exported, []byte("# TYPE "+m+" ")) {
					t.Errorf("alert %s reads %s, which the binary does not export", r.Alert, m)
				}
			}
		}
	}
	if n == 0 {
		t.Fatal("no metric found in the rules")
	}
}

// scrape starts the binary in demo mode, makes one call so that labelled metrics exist,
// and returns its /metrics.
func scrape(t *testing.T, bin string) []byte {
	t.Helper()
	d := startDemoAll(t, bin)
	seed, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Post("http://"+d.http+"/v3/evidence/evi-point/psn-realname", "application/json", bytes.NewReader(seed))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + d.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return b
}
