package check

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"sigs.k8s.io/yaml"
)

const (
	rulesFile     = "../prometheus/esign-evidence.rules.yml"
	ruleTestsFile = "../prometheus/esign-evidence.rules.test.yml"
	dashboardFile = "../grafana/esign-evidence.json"
	operations    = "../../OPERATIONS.md"
	// runbookBase is where every alert's runbook_url points: a section of OPERATIONS.md.
	runbookBase = "https://github.com/esign-evidence/esign-evidence/blob/main/OPERATIONS.md#"
)

// promql is the parser Prometheus itself runs (the version deploy/check's go.mod pins),
// with its default functions only: an experimental function would fail on a stock server.
var promql = parser.NewParser(parser.Options{})

// targetLabels are the labels Prometheus adds at scrape time; the binary never exports them.
var targetLabels = map[string]bool{"job": true, "instance": true}

// query is one PromQL expression and where it comes from.
type query struct{ where, expr string }

// alertRule is an alerting rule as the rules file holds it.
type alertRule struct {
	Alert       string            `json:"alert"`
	Expr        string            `json:"expr"`
	For         string            `json:"for"`
	Labels      map[string]string `json:"labels"`
	Annotations map[string]string `json:"annotations"`
}

func alertRules(t *testing.T) []alertRule {
	t.Helper()
	raw, err := os.ReadFile(rulesFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string      `json:"name"`
			Rules []alertRule `json:"rules"`
		} `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(raw, &f); err != nil {
		t.Fatal(err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatal("no rule in " + rulesFile)
	}
	return out
}

// grafanaVars are the values the dashboard's variables stand for when its queries are
// parsed: Grafana substitutes them before sending a query to Prometheus. A variable not
// listed here fails the test.
var grafanaVars = map[string]string{
	"$__rate_interval": "5m",
	"$__interval":      "1m",
	"$__range":         "6h",
	"$job":             ".*",
	"$instance":        ".*",
}

var grafanaVar = regexp.MustCompile(`\$\{?[A-Za-z_]+\}?`)

func substituteVars(t *testing.T, where, q string) string {
	t.Helper()
	return grafanaVar.ReplaceAllStringFunc(q, func(v string) string {
		name := "$" + strings.Trim(v, "${}")
		s, ok := grafanaVars[name]
		if !ok {
			t.Errorf("%s: variable %s has no stand-in value; add it to grafanaVars", where, v)
		}
		return s
	})
}

// labelValues is Grafana's variable query label_values(selector, label).
var labelValues = regexp.MustCompile(`^label_values\((.+),\s*([A-Za-z_][A-Za-z0-9_]*)\)$`)

// dashboardQueries returns every PromQL query of the generated dashboard (panels and
// variables), variables substituted, and the labels its variables read.
func dashboardQueries(t *testing.T) (queries []query, varLabels []query) {
	t.Helper()
	raw, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type target struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	}
	type panel struct {
		Type    string   `json:"type"`
		Title   string   `json:"title"`
		Targets []target `json:"targets"`
		Panels  []panel  `json:"panels"`
	}
	var d struct {
		Panels     []panel `json:"panels"`
		Templating struct {
			List []struct {
				Name  string `json:"name"`
				Type  string `json:"type"`
				Query any    `json:"query"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var walk func([]panel)
	walk = func(ps []panel) {
		for _, p := range ps {
			walk(p.Panels)
			if p.Type == "row" {
				continue
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no query", p.Title)
			}
			for _, tg := range p.Targets {
				where := fmt.Sprintf("panel %q query %s", p.Title, tg.RefID)
				queries = append(queries, query{where, substituteVars(t, where, tg.Expr)})
			}
		}
	}
	walk(d.Panels)
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		m := labelValues.FindStringSubmatch(q)
		where := "variable $" + v.Name
		if m == nil {
			t.Errorf("%s: %q is not label_values(selector, label)", where, q)
			continue
		}
		queries = append(queries, query{where, substituteVars(t, where, m[1])})
		varLabels = append(varLabels, query{where, m[2]})
	}
	if len(queries) == 0 {
		t.Fatal("no query in " + dashboardFile)
	}
	return queries, varLabels
}

// exposition is the series a scrape returned, each with its labels (histograms and
// summaries as their _bucket, _sum and _count series).
type exposition []labels.Labels

func parseExposition(t *testing.T, body []byte) exposition {
	t.Helper()
	var out exposition
	for _, line := range strings.Split(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			t.Fatalf("exposition line %q", line)
		}
		ls, err := promql.ParseMetric(line[:i])
		if err != nil {
			t.Fatalf("exposition line %q: %v", line, err)
		}
		out = append(out, ls)
	}
	if len(out) < 10 {
		t.Fatalf("the scrape holds %d series", len(out))
	}
	return out
}

// selects reports whether some exported series matches every matcher of the selector,
// target labels aside. up is the series Prometheus writes for every target.
func (e exposition) selects(ms []*labels.Matcher) bool {
	name := ""
	for _, m := range ms {
		if m.Name == labels.MetricName && m.Type == labels.MatchEqual {
			name = m.Value
		}
	}
	if name == "up" {
		return true
	}
	return slices.ContainsFunc(e, func(ls labels.Labels) bool {
		for _, m := range ms {
			if targetLabels[m.Name] {
				continue
			}
			if !m.Matches(ls.Get(m.Name)) {
				return false
			}
		}
		return true
	})
}

// hasLabel reports whether some exported series of the selector carries label (or it is
// a target label).
func (e exposition) hasLabel(ms []*labels.Matcher, label string) bool {
	if targetLabels[label] {
		return true
	}
	return slices.ContainsFunc(e, func(ls labels.Labels) bool {
		for _, m := range ms {
			if !targetLabels[m.Name] && !m.Matches(ls.Get(m.Name)) {
				return false
			}
		}
		return ls.Has(label)
	})
}

// checkQueries parses each query with Prometheus' parser and requires every series
// selector in it to select at least one series of the scrape.
func checkQueries(t *testing.T, qs []query, scraped exposition) int {
	t.Helper()
	n := 0
	for _, q := range qs {
		expr, err := promql.ParseExpr(q.expr)
		if err != nil {
			t.Errorf("%s does not parse: %v\n%s", q.where, err, q.expr)
			continue
		}
		found := 0
		parser.Inspect(expr, func(node parser.Node, _ []parser.Node) error {
			vs, ok := node.(*parser.VectorSelector)
			if !ok {
				return nil
			}
			found++
			if vs.Name == "" {
				t.Errorf("%s: selector %s names no metric", q.where, vs)
			}
			if !scraped.selects(vs.LabelMatchers) {
				t.Errorf("%s reads %s, which selects no series the binary exports", q.where, vs)
			}
			return nil
		})
		if found == 0 {
			t.Errorf("%s reads no series: %s", q.where, q.expr)
		}
		n += found
	}
	return n
}

// TestAlertRulesUseExportedMetrics: every alert expression parses, and every series it
// reads is one the binary exports from start-up, before any call: a renamed metric or
// label value would silently never fire, and a counter series that first appears at 1
// gives increase() and rate() nothing to compare. promtool checks the rule tests
// (`make deploy-check`).
func TestAlertRulesUseExportedMetrics(t *testing.T) {
	var qs []query
	for _, r := range alertRules(t) {
		qs = append(qs, query{"alert " + r.Alert, r.Expr})
	}
	bin := theBinary(t)
	d := startDemoAll(t, bin.path)
	if n := checkQueries(t, qs, parseExposition(t, scrape(t, d))); n == 0 {
		t.Fatal("no series selector found in the rules")
	}
}

// TestDashboardUsesExportedMetrics: every query of the generated dashboard parses, and
// every series it reads is one the binary exports once it has served a few calls (gRPC and
// REST, a success and a refusal each, a connection over MAX_CONNECTIONS); every label its
// variables list exists on those series.
func TestDashboardUsesExportedMetrics(t *testing.T) {
	qs, varLabels := dashboardQueries(t)
	bin := theBinary(t)
	const maxConns = 4
	d := startDemoAll(t, bin.path, fmt.Sprintf("MAX_CONNECTIONS=%d", maxConns))
	exercise(t, d, maxConns)
	scraped := parseExposition(t, scrape(t, d))
	if n := checkQueries(t, qs, scraped); n == 0 {
		t.Fatal("no series selector found in the dashboard")
	}
	for i, l := range varLabels {
		ms, err := promql.ParseMetricSelector(qs[len(qs)-len(varLabels)+i].expr)
		if err != nil {
			t.Errorf("%s: %v", l.where, err)
			continue
		}
		if !scraped.hasLabel(ms, l.expr) {
			t.Errorf("%s lists label %s, which its series do not carry", l.where, l.expr)
		}
	}
}

// exercise makes a few calls to the demo: the seed example over gRPC and REST, an invalid
// request over each, a lookup, an unknown REST path; then holds one connection more than
// maxConns, so that one is refused.
func exercise(t *testing.T, d demo, maxConns int) {
	t.Helper()
	grpcurl := os.Getenv("GRPCURL")
	if grpcurl == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("GRPCURL is not set (`make deploy-check` sets it)")
		}
		t.Skip("GRPCURL is not set; run `make deploy-check`")
	}
	seed, err := os.ReadFile("../../testdata/seed_request.json")
	if err != nil {
		t.Fatal(err)
	}
	const create = "esign.evidence.v1.EvidenceService/CreatePersonalEvidencePoint"
	for _, c := range []struct {
		body, want string
	}{
		{string(seed), `"eviPointId"`},
		{`{"customBizId": "x"}`, "InvalidArgument"},
	} {
		out, _ := exec.Command(grpcurl, "-plaintext", "-d", c.body, d.grpc, create).CombinedOutput()
		if !bytes.Contains(out, []byte(c.want)) {
			t.Fatalf("gRPC call: want %s, got\n%s", c.want, out)
		}
	}
	out, _ := exec.Command(grpcurl, "-plaintext", "-d", `{"customBizId": "no-such-key"}`, d.grpc,
		"esign.evidence.v1.EvidenceService/GetSubmission").CombinedOutput()
	if !bytes.Contains(out, []byte("NotFound")) {
		t.Fatalf("GetSubmission: %s", out)
	}
	for _, c := range []struct {
		path, body string
		want       int
	}{
		{"/v3/evidence/evi-point/psn-realname", string(seed), http.StatusOK},
		{"/v3/evidence/evi-point/psn-realname", `{}`, http.StatusBadRequest},
		{"/no/such/route", `{}`, http.StatusNotFound},
	} {
		resp, err := http.Post("http://"+d.http+c.path, "application/json", strings.NewReader(c.body))
		if err != nil {
			t.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.want {
			t.Fatalf("POST %s: %d, want %d", c.path, resp.StatusCode, c.want)
		}
	}
	// One connection over the limit: the service closes it at once and counts it.
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for range maxConns + 1 {
		c, err := net.Dial("tcp", d.grpc)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, c)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !bytes.Contains(scrape(t, d), []byte("esign_evidence_connections_refused_total{")) {
		if time.Now().After(deadline) {
			t.Fatal("no connection was refused over MAX_CONNECTIONS")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// scrape returns the demo's /metrics.
func scrape(t *testing.T, d demo) []byte {
	t.Helper()
	resp, err := http.Get("http://" + d.admin + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v", resp.StatusCode, err)
	}
	return b
}

// TestAlertsHaveRunbooks: every alert has a severity, a summary, a description and a
// runbook_url that points at a section of OPERATIONS.md which exists.
func TestAlertsHaveRunbooks(t *testing.T) {
	doc, err := os.ReadFile(operations)
	if err != nil {
		t.Fatal(err)
	}
	anchors := markdownAnchors(string(doc))
	for _, r := range alertRules(t) {
		if s := r.Labels["severity"]; s != "critical" && s != "warning" {
			t.Errorf("alert %s: severity %q, want critical or warning", r.Alert, s)
		}
		for _, a := range []string{"summary", "description", "runbook_url"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s has no %s", r.Alert, a)
			}
		}
		u := r.Annotations["runbook_url"]
		anchor, ok := strings.CutPrefix(u, runbookBase)
		switch {
		case !ok:
			t.Errorf("alert %s: runbook_url %q is not under %s", r.Alert, u, runbookBase)
		case !anchors[anchor]:
			t.Errorf("alert %s: runbook_url %q: OPERATIONS.md has no section #%s", r.Alert, u, anchor)
		case anchor != strings.ToLower(r.Alert):
			t.Errorf("alert %s: runbook_url %q is not the alert's own section", r.Alert, u)
		}
	}
}

// markdownAnchors returns the anchors GitHub gives a Markdown file's headings: lower
// case, punctuation dropped, spaces as hyphens, repeats numbered.
func markdownAnchors(doc string) map[string]bool {
	out := map[string]bool{}
	seen := map[string]int{}
	inFence := false
	for _, line := range strings.Split(doc, "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		text := strings.TrimSpace(strings.TrimLeft(line, "#"))
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r > 127:
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			out[fmt.Sprintf("%s-%d", a, n)] = true
		} else {
			out[a] = true
		}
		seen[a]++
	}
	return out
}

// TestEveryAlertIsTested: the promtool rule tests hold, for every alert, a case where it
// fires and one where it does not.
func TestEveryAlertIsTested(t *testing.T) {
	raw, err := os.ReadFile(ruleTestsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Tests []struct {
			AlertRuleTest []struct {
				Alertname string `json:"alertname"`
				ExpAlerts []any  `json:"exp_alerts"`
			} `json:"alert_rule_test"`
		} `json:"tests"`
	}
	if err := yaml.Unmarshal(raw, &f); err != nil {
		t.Fatal(err)
	}
	fires, silent := map[string]bool{}, map[string]bool{}
	for _, tc := range f.Tests {
		for _, a := range tc.AlertRuleTest {
			if len(a.ExpAlerts) > 0 {
				fires[a.Alertname] = true
			} else {
				silent[a.Alertname] = true
			}
		}
	}
	for _, r := range alertRules(t) {
		if !fires[r.Alert] {
			t.Errorf("alert %s: no rule test where it fires", r.Alert)
		}
		if !silent[r.Alert] {
			t.Errorf("alert %s: no rule test where it stays silent", r.Alert)
		}
	}
}
