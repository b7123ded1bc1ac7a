# esign-evidence — run `make help` for the targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

# The approved newer Go toolchain (go1.27.3), fetched by the go command from the module proxy on
# first use. Go 1.26.8, which these machines start with, has standard-library vulnerabilities
# that govulncheck reports as reachable; go.mod names 1.27.3, so plain 1.26 refuses to build.
export GOTOOLCHAIN := go1.27.3

GRPCURL_VERSION := v1.9.4

# buf lives in its own module (tools/go.mod): it pins a pre-release protobuf runtime that
# must not leak into the generated code's headers.
BUF := go tool -modfile=tools/go.mod buf

.PHONY: help
help: ## List the targets.
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

.PHONY: protodeps
protodeps: ## Fetch third-party .proto files into third_party/proto (gitignored).
	@scripts/protodeps.sh

.PHONY: generate
generate: protodeps ## Regenerate gen/ and docs/api-reference.md from proto/ (and finish the OpenAPI document).
	$(BUF) generate
	$(BUF) generate --template buf.gen.docs.yaml
	go run ./scripts/openapimerge gen/openapiv2/esign/evidence/v1/evidence.swagger.json openapi/upload.swagger.json

.PHONY: lint
lint: protodeps ## buf lint, buf format check, gofmt, go vet, the import rules of ARCHITECTURE.md.
	$(BUF) lint
	$(BUF) format --diff --exit-code proto
	@out=$$(gofmt -l $$(git ls-files '*.go' | grep -v '^gen/')); if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	go vet ./...
	go run ./scripts/archcheck

.PHONY: breaking
breaking: protodeps ## buf breaking against the main branch.
	@scripts/breaking.sh main

.PHONY: gen-check
gen-check: generate ## Fail if gen/ or docs/api-reference.md differs from what generation produces.
	@if [ -n "$$(git status --porcelain -- gen docs/api-reference.md)" ]; then \
	  echo "gen/ or docs/api-reference.md is not what 'make generate' produces:"; \
	  git status --porcelain -- gen docs/api-reference.md; git diff --stat -- gen docs/api-reference.md; exit 1; fi

.PHONY: tools
tools: bin/.grpcurl-$(GRPCURL_VERSION) ## Install grpcurl into bin/ (the README's examples and tests use it).

bin/.grpcurl-$(GRPCURL_VERSION):
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin go install github.com/fullstorydev/grpcurl/cmd/grpcurl@$(GRPCURL_VERSION)
	@touch $@

# Static analysis and the vulnerability scan, pinned. staticcheck runs its default checks
# (every SA/S/QF check and the ST checks it enables by default); govulncheck reads a database
# built locally from the golang.org/x/vulndb module (scripts/vulndb.sh), since vuln.go.dev is
# out of reach. Both exit non-zero on a finding; govulncheck only on a vulnerability the
# code can reach (symbol level), not on one merely present in a required module.
# staticcheck release 2026.2.2 is module version v0.8.2.
STATICCHECK_VERSION := v0.8.2
GOVULNCHECK_VERSION := v1.9.0
# The vulnerability reports as of this module version; take newer ones with
# `go list -m golang.org/x/vulndb@latest` and put its version here.
VULNDB_VERSION := v0.0.0-20261105234957-e22db6528018

bin/.staticcheck-$(STATICCHECK_VERSION):
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin go install honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION)
	@touch $@

bin/.govulncheck-$(GOVULNCHECK_VERSION):
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin go install golang.org/x/vuln/cmd/govulncheck@$(GOVULNCHECK_VERSION)
	@touch $@

.PHONY: staticcheck
staticcheck: bin/.staticcheck-$(STATICCHECK_VERSION) ## Run staticcheck (pinned); fails on any finding.
	bin/staticcheck ./...

.PHONY: vulndb
vulndb: ## Build govulncheck's database from the golang.org/x/vulndb module into .cache/vulndb.
	@scripts/vulndb.sh $(VULNDB_VERSION) >/dev/null

.PHONY: vulncheck
vulncheck: bin/.govulncheck-$(GOVULNCHECK_VERSION) vulndb ## Run govulncheck (pinned) against the local database; fails on a reachable vulnerability.
	bin/govulncheck -db file://$(CURDIR)/.cache/vulndb/$(VULNDB_VERSION) ./...

.PHONY: analyze
analyze: staticcheck vulncheck ## staticcheck and govulncheck (CI runs both).

.PHONY: build
# -buildvcs=auto stamps the VCS revision into the binary (-version, esign_evidence_build_info)
# even where GOFLAGS says -buildvcs=false.
build: ## Build bin/esign-evidence and bin/esign-import.
	go build -buildvcs=auto -o bin/esign-evidence ./cmd/esign-evidence
	go build -buildvcs=auto -o bin/esign-import ./cmd/esign-import

.PHONY: run
run: tools build ## Run the service in demo mode (offline e签宝 simulator): gRPC localhost:9090, REST localhost:8080.
	bin/esign-evidence -simulate

.PHONY: test
test: tools ## Run every test (the test command CI runs).
	GRPCURL=$(CURDIR)/bin/grpcurl go test -race -count=1 ./...

SEEDS ?= 100000
SEED ?=

.PHONY: simulate
simulate: ## Exactly-once under SEEDS (100000) seeded schedules of faults, real submission code, simulated time; SEED=n replays one with its trace.
ifneq ($(SEED),)
	go test -count=1 -run '^TestSimulate$$' -v ./internal/simulation -args -seed=$(SEED)
else
	go test -count=1 -timeout 60m -run '^TestSimulate$$' -v ./internal/simulation -args -seeds=$(SEEDS) | grep -v '^=== RUN'
endif

.PHONY: simulate-bugs
simulate-bugs: ## Proof the simulation can fail: each deliberate bug (a -tags simbugs build only) caught within 10,000 seeds.
	go test -tags simbugs -count=1 -run '^TestDeliberateBugsAreCaught$$' -v ./internal/simulation | grep -E 'caught|^(---|ok|FAIL)'

FUZZTIME ?= 10s

.PHONY: fuzz
fuzz: ## Run each fuzz target for FUZZTIME (10s; CI's smoke run).
	go test -run='^$$' -fuzz=FuzzRESTBody -fuzztime=$(FUZZTIME) ./server/gateway/
	go test -run='^$$' -fuzz='^FuzzHeldBodyDecoder$$' -fuzztime=$(FUZZTIME) ./server/gateway/
	go test -run='^$$' -fuzz=FuzzTranslate -fuzztime=$(FUZZTIME) ./server/translate/
	go test -run='^$$' -fuzz=FuzzDecodeResponse -fuzztime=$(FUZZTIME) ./upstream/
	go test -run='^$$' -fuzz='^FuzzGRPCBytes$$' -fuzztime=$(FUZZTIME) ./cmd/esign-evidence/
	go test -run='^$$' -fuzz='^FuzzUploadFileName$$' -fuzztime=$(FUZZTIME) ./cmd/esign-evidence/
	go test -run='^$$' -fuzz='^FuzzNativeRulesAgreeWithCEL$$' -fuzztime=$(FUZZTIME) ./validation/
	go test -run='^$$' -fuzz='^FuzzPatternMatchersAgreeWithRegexp$$' -fuzztime=$(FUZZTIME) ./validation/

GHZ_VERSION := v0.120.0
HEY_VERSION := v0.1.5

bin/.ghz-$(GHZ_VERSION):
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin go install github.com/bojand/ghz/cmd/ghz@$(GHZ_VERSION)
	@touch $@

bin/.hey-$(HEY_VERSION):
	@mkdir -p bin
	GOBIN=$(CURDIR)/bin go install github.com/rakyll/hey@$(HEY_VERSION)
	@touch $@

BENCH_DURATION ?= 10s
# BENCH_ROUNDS is how many rounds of the load runs make bench takes the median of.
BENCH_ROUNDS ?= 5
BENCH_SOAK ?= 60s
# BENCH_BEFORE names an earlier build of esign-evidence to measure in the same run.
BENCH_BEFORE ?=

.PHONY: bench
bench: bin/.ghz-$(GHZ_VERSION) bin/.hey-$(HEY_VERSION) ## Load-test gRPC and REST against a baseline; print the table (see BENCHMARKS.md).
	go build -o bin/esign-evidence ./cmd/esign-evidence
	go build -o bin/esign-sim ./cmd/esign-sim
	go build -o bin/baseline ./bench/baseline
	go build -o bin/floor ./bench/floor
	go test -run='^$$' -bench=. -benchmem ./validation/ ./server/ ./server/translate/
	go run ./bench/run -d $(BENCH_DURATION) -rounds $(BENCH_ROUNDS) -soak $(BENCH_SOAK) $(if $(BENCH_BEFORE),-before $(BENCH_BEFORE)) $(if $(BENCH_BEFORE_SRC),-before-src $(BENCH_BEFORE_SRC))

.PHONY: examples
examples: tools ## Generate Node.js and Python stubs and run the examples and grpcurl against the demo.
	examples/run.sh

DOCS := README.md API.md CONFIGURATION.md OPERATIONS.md ARCHITECTURE.md BENCHMARKS.md docs/api-reference.md

.PHONY: docs-check
docs-check: ## README.md at most 15 KB; every relative link and anchor in the docs resolves.
	go run ./scripts/doccheck -max-readme 15360 $(DOCS)

.PHONY: client-check
client-check: build ## Generate a TypeScript client from the OpenAPI document, compile it and call the demo with it.
	examples/typescript/run.sh

.PHONY: readme-check
readme-check: tools build ## Run the README's grpcurl and curl examples against the demo.
	scripts/readme-examples.sh

IMAGE ?= localhost/esign-evidence:dev
export IMAGE

.PHONY: image
image: ## Build the container image $(IMAGE) with podman, offline (FROM scratch; podman from Debian if missing).
	scripts/image.sh build

.PHONY: image-plain
image-plain: ## Build the image as a plain `podman build .` does, its Go stage run for real on a stand-in Go image made offline (slow).
	scripts/image.sh plain

.PHONY: image-check
image-check: tools ## Check the image from outside: user, entrypoint, filesystem, its binary serving the seed example.
	scripts/image.sh check

.PHONY: dashboard
dashboard: ## Regenerate the Grafana dashboard deploy/grafana/esign-evidence.json from deploy/grafana/main.go.
	cd deploy/grafana && go run . > esign-evidence.json.tmp && mv esign-evidence.json.tmp esign-evidence.json

.PHONY: dashboard-check
dashboard-check: ## Fail if deploy/grafana/esign-evidence.json is not what the generator writes.
	@cd deploy/grafana && go vet ./... && go run . > esign-evidence.json.tmp && \
	  if ! diff -u esign-evidence.json esign-evidence.json.tmp; then rm -f esign-evidence.json.tmp; \
	    echo "deploy/grafana/esign-evidence.json is not what 'make dashboard' writes: run make dashboard"; exit 1; fi; \
	  rm -f esign-evidence.json.tmp

.PHONY: deploy-check
deploy-check: tools build dashboard-check ## Check deploy/: Kubernetes manifests, systemd unit, alert rules and dashboard, against the binary.
	@command -v promtool >/dev/null || { echo "== installing promtool (Debian's prometheus package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v systemd-analyze >/dev/null || { echo "== installing systemd-analyze (Debian's systemd package)"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends systemd >/dev/null; }
	cd deploy/prometheus && promtool check rules esign-evidence.rules.yml && promtool test rules esign-evidence.rules.test.yml
	cd deploy/check && go vet ./... && \
	  ESIGN_EVIDENCE_BIN=$(CURDIR)/bin/esign-evidence GRPCURL=$(CURDIR)/bin/grpcurl go test -count=1 ./...

.PHONY: openapi-check
openapi-check: build ## Send the OpenAPI document's example requests to the demo; each must succeed as documented.
	scripts/openapi-examples.sh
