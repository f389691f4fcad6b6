# Latchkey — the two commands a new machine needs are `make run` and `make test`.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c

BIN           := $(CURDIR)/bin
GO            ?= go
VERSION       ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS       := -s -w -X main.version=$(VERSION)

# Pinned tool versions, installed with `go install` into bin/.
CONTROLLER_GEN_VERSION ?= v0.23.0
GOLANGCI_LINT_VERSION  ?= v2.15.0
HELM_VERSION           ?= v3.22.0

CONTROLLER_GEN := $(BIN)/controller-gen
GOLANGCI_LINT  := $(BIN)/golangci-lint
HELM           := $(BIN)/helm

# go test settings: -p 2 matches the 2-core CI machine.
TEST_FLAGS ?= -p 2 -timeout 30m
FUZZTIME   ?= 3s
ARGS       ?=

.PHONY: all
all: build

.PHONY: build
build: ## Build bin/latchkey.
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/latchkey .

.PHONY: run
run: ## Serve a working issuer with no cluster and no Redis: go run . --dev $(ARGS)
	$(GO) run . --dev $(ARGS)

##@ Tests

.PHONY: test
test: test-deps ## Install what the tests need, then run every test (unit, Redis, envtest, browser, chart).
	export KUBEBUILDER_ASSETS="$$(hack/envtest-assets.sh | tail -n 1)"; \
	export HELM="$(HELM)"; \
	export CHROME_PATH="$$(command -v chromium || true)"; \
	$(GO) vet ./...; \
	$(GO) test $(TEST_FLAGS) ./...; \
	$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZTIME)

.PHONY: test-deps
test-deps: $(HELM) ## Install redis-server and chromium (Debian packages) when missing.
	@missing=""; \
	command -v redis-server >/dev/null || missing="$$missing redis-server"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  echo "make: installing$$missing from Debian packages"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq; \
	  DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq --no-install-recommends $$missing >/dev/null; \
	fi

.PHONY: envtest
envtest: ## Build kube-apiserver and etcd for envtest (cached in bin/k8s/).
	hack/envtest-assets.sh

.PHONY: fuzz
fuzz: ## Run every fuzz target for FUZZTIME (default 3s; `make fuzz FUZZTIME=5m` for a real run).
	@hack/fuzz.sh $(FUZZTIME)

##@ Performance

.PHONY: bench
bench: ## Go benchmarks, then every loadgen workload against a pinned --dev server with Redis; writes docs/benchmarks.md.
	hack/bench.sh

.PHONY: soak
soak: ## 10 minutes of steady mixed load with a real Redis (SOAK_DURATION=10m); writes docs/soak.md. Not part of test.
	hack/soak.sh

##@ Code generation and checks

.PHONY: generate
generate: $(CONTROLLER_GEN) ## Generate deepcopy, CRDs (config/crd/bases and the chart) and RBAC.
	$(CONTROLLER_GEN) object paths=./api/...
	$(CONTROLLER_GEN) crd paths=./api/... output:crd:artifacts:config=config/crd/bases
	$(CONTROLLER_GEN) rbac:roleName=latchkey-manager paths=./controllers/... output:rbac:artifacts:config=config/rbac
	@if [ -x hack/sync-chart-crds.sh ]; then hack/sync-chart-crds.sh; fi

.PHONY: verify
verify: generate ## Fail if generated files or formatting are out of date.
	@test -z "$$(gofmt -l $$(git ls-files '*.go'))" || { echo "gofmt needed:"; gofmt -l $$(git ls-files '*.go'); exit 1; }
	@git diff --exit-code -- api config charts || { echo "make generate changed files: commit them"; exit 1; }
	@test -z "$$(git status --porcelain -- api config charts)" || { echo "make generate left untracked files"; git status --porcelain -- api config charts; exit 1; }

.PHONY: lint
lint: $(GOLANGCI_LINT) ## go vet and golangci-lint.
	$(GO) vet ./...
	$(GOLANGCI_LINT) run ./...

$(CONTROLLER_GEN):
	GOBIN=$(BIN) $(GO) install sigs.k8s.io/controller-tools/cmd/controller-gen@$(CONTROLLER_GEN_VERSION)

$(GOLANGCI_LINT):
	GOBIN=$(BIN) $(GO) install github.com/golangci/golangci-lint/v2/cmd/golangci-lint@$(GOLANGCI_LINT_VERSION)

$(HELM):
	GOBIN=$(BIN) $(GO) install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

.PHONY: help
help: ## Show this help.
	@awk 'BEGIN {FS = ":.*##"} /^[a-zA-Z_-]+:.*##/ { printf "  %-12s %s\n", $$1, $$2 } /^##@/ { printf "\n%s\n", substr($$0, 5) }' $(MAKEFILE_LIST)
