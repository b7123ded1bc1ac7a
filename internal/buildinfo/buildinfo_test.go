package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{
		GoVersion: "go1.27.3",
		Main:      debug.Module{Path: "github.com/esign-evidence/esign-evidence", Version: "v0.0.0-20261129073943-8206778f0c1a+dirty"},
		Settings: []debug.BuildSetting{
			{Key: "vcs", Value: "git"},
			{Key: "vcs.revision", Value: "8206778f0c1a"},
			{Key: "vcs.modified", Value: "true"},
		},
	}
	i := fromBuildInfo(bi)
	want := Info{Version: "v0.0.0-20261129073943-8206778f0c1a+dirty", Revision: "8206778f0c1a", Modified: true, GoVersion: "go1.27.3"}
	if i != want {
		t.Fatalf("got %+v, want %+v", i, want)
	}
	if s := i.String(); s != "esign-evidence v0.0.0-20261129073943-8206778f0c1a+dirty, revision 8206778f0c1a (modified), built with go1.27.3" {
		t.Errorf("String: %q", s)
	}

	reg := prometheus.NewRegistry()
	reg.MustRegister(i.Collector())
	exp := `# HELP esign_evidence_build_info The running build: module version, VCS revision and Go version (always 1).
# TYPE esign_evidence_build_info gauge
esign_evidence_build_info{go_version="go1.27.3",revision="8206778f0c1a-modified",version="v0.0.0-20261129073943-8206778f0c1a+dirty"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(exp), "esign_evidence_build_info"); err != nil {
		t.Error(err)
	}
}

func TestWithoutVCS(t *testing.T) {
	i := fromBuildInfo(&debug.BuildInfo{GoVersion: "go1.27.3"})
	if i.Version != "unknown" || i.Revision != "unknown" || i.Modified {
		t.Errorf("got %+v", i)
	}
}
