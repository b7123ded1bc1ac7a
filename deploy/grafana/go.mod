module github.com/esign-evidence/esign-evidence/deploy/grafana

go 1.27.3

require github.com/grafana/grafana-foundation-sdk/go v0.0.22
