// Package buildinfo reports what the running binary was built from: the module version,
// the VCS revision and the Go version, as the go command stamped them into the binary.
// `esign-evidence -version` prints it and the esign_evidence_build_info metric carries it.
package buildinfo

import (
	"fmt"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// Info describes one build. Fields the go command did not record are "unknown".
type Info struct {
	// Version is the main module's version: a tag such as v1.2.0, a pseudo-version for an
	// untagged commit (with +dirty for a modified tree), or "(devel)".
	Version string
	// Revision is the VCS commit the binary was built from.
	Revision string
	// Modified is true when the working tree had uncommitted changes.
	Modified bool
	// GoVersion is the Go toolchain that built the binary.
	GoVersion string
}

// Read returns the running binary's build information.
func Read() Info {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Info{Version: "unknown", Revision: "unknown", GoVersion: "unknown"}
	}
	return fromBuildInfo(bi)
}

func fromBuildInfo(bi *debug.BuildInfo) Info {
	i := Info{Version: bi.Main.Version, Revision: "unknown", GoVersion: bi.GoVersion}
	if i.Version == "" {
		i.Version = "unknown"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Revision = s.Value
		case "vcs.modified":
			i.Modified = s.Value == "true"
		}
	}
	return i
}

// String is the one line `-version` prints.
func (i Info) String() string {
	rev := i.Revision
	if i.Modified {
		rev += " (modified)"
	}
	return fmt.Sprintf("esign-evidence %s, revision %s, built with %s", i.Version, rev, i.GoVersion)
}

// Collector exports the build as the gauge esign_evidence_build_info, always 1, labelled
// version, revision and go_version, so dashboards can tell which build each process runs.
func (i Info) Collector() prometheus.Collector {
	rev := i.Revision
	if i.Modified {
		rev += "-modified"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace:   "esign_evidence",
		Name:        "build_info",
		Help:        "The running build: module version, VCS revision and Go version (always 1).",
		ConstLabels: prometheus.Labels{"version": i.Version, "revision": rev, "go_version": i.GoVersion},
	})
	g.Set(1)
	return g
}
