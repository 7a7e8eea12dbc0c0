# kubectl-prefect: build, test, demo.
#   make build   bin/kubectl-prefect (the plugin) and bin/prefect-agent (the image's agent)
#   make unit    unit tests only (go test -short): seconds, no test binaries needed
#   make test    unit and integration tests (builds the test binaries first if needed)
#   make bench   size, idle memory and a 1000-run burst, built as released (about 3 minutes)
#   make bench-manage  steady state with 100 and 10,000 managed Jobs (about 15 minutes)
#   make bench-runs    `kubectl prefect runs` over 10,000 Jobs against `kubectl get jobs`
#   make demo    a throwaway cluster, the Prefect emulator and the agent, end to end
#   make tools   the test binaries: etcd, kube-apiserver, kube-controller-manager,
#                kube-scheduler, kubectl, kwok, kwokctl, built from source into .cache/bin,
#                and Prefect 1.4.1's flow runner in a Python venv in .cache/python
#   make lint    gofmt, go vet, staticcheck

SHELL := /bin/bash
GO ?= go
TOOLS := $(CURDIR)/.cache/bin
STAMP := $(TOOLS)/.stamp
# The tools are rebuilt only when a pinned version changes.
TOOL_PINS := hack/tools/go.mod hack/tools/go.sum hack/kwok/go.mod hack/kwok/go.sum
# Prefect 1.4.1's flow runner, which the test bed runs for real flows, in a
# virtual environment built with the machine's Python 3.9 to 3.12 (PYTHON=...
# picks one); rebuilt only when the pins change.
PYTHON_ENV := $(CURDIR)/.cache/python
PYTHON_STAMP := $(PYTHON_ENV)/.stamp
PYTHON_PINS := hack/flow-runner/requirements.txt

.PHONY: all build test unit tools lint demo bench bench-manage bench-runs clean release-tools release-check release-snapshot

all: build

build:
	$(GO) build -o bin/kubectl-prefect ./cmd/kubectl-prefect
	$(GO) build -o bin/prefect-agent ./cmd/prefect-agent

tools: $(STAMP) $(PYTHON_STAMP)

$(STAMP): $(TOOL_PINS)
	@mkdir -p $(TOOLS)
	@echo "Building the test binaries into .cache/bin (about 10 minutes on 2 cores the first time)."
	@set -e; start=$$SECONDS; n=0; \
	build() { \
	  mod=$$1; out=$$2; pkg=$$3; n=$$((n+1)); \
	  echo "[$$n/7] $$out ($$pkg)"; \
	  ( while sleep 30; do echo "      still building $$out: $$((SECONDS-start)) s so far"; done ) & ticker=$$!; \
	  if ! (cd hack/$$mod && $(GO) build -o $(TOOLS)/$$out $$pkg); then kill $$ticker; exit 1; fi; \
	  kill $$ticker 2>/dev/null || true; \
	}; \
	build tools etcd go.etcd.io/etcd/server/v3; \
	build tools kube-apiserver k8s.io/kubernetes/cmd/kube-apiserver; \
	build tools kube-controller-manager k8s.io/kubernetes/cmd/kube-controller-manager; \
	build tools kube-scheduler k8s.io/kubernetes/cmd/kube-scheduler; \
	build tools kubectl k8s.io/kubernetes/cmd/kubectl; \
	build kwok kwok sigs.k8s.io/kwok/cmd/kwok; \
	build kwok kwokctl sigs.k8s.io/kwok/cmd/kwokctl; \
	echo "Test binaries ready in $$((SECONDS-start)) s."
	@touch $(STAMP)

$(PYTHON_STAMP): $(PYTHON_PINS)
	@set -e; py=""; \
	for c in $(PYTHON) python3 python3.12 python3.11 python3.10 python3.9; do \
	  if command -v $$c >/dev/null 2>&1 && $$c -c 'import sys, venv, ensurepip; sys.exit(0 if (3, 9) <= sys.version_info[:2] <= (3, 12) else 1)' >/dev/null 2>&1; then py=$$c; break; fi; \
	done; \
	if [ -z "$$py" ]; then \
	  echo "make tools: the test bed runs Prefect 1.4.1's flow runner, which needs Python 3.9 to 3.12 with venv and pip," >&2; \
	  echo "  and none was found (tried $(if $(PYTHON),$(PYTHON) )python3 python3.12 python3.11 python3.10 python3.9)." >&2; \
	  echo "  Install one (Debian or Ubuntu: apt-get install python3 python3-venv) or name it: make tools PYTHON=/path/to/python3.11" >&2; \
	  exit 1; \
	fi; \
	echo "Building Prefect 1.4.1's flow runner into .cache/python with $$($$py --version) ($$(command -v $$py)): about a minute."; \
	start=$$SECONDS; rm -rf $(PYTHON_ENV); \
	$$py -m venv $(PYTHON_ENV); \
	echo "[1/2] pip install -r $(PYTHON_PINS) (pinned, no other packages)"; \
	$(PYTHON_ENV)/bin/python -m pip install --disable-pip-version-check --quiet --no-deps -r $(PYTHON_PINS); \
	$(PYTHON_ENV)/bin/python -m pip check --disable-pip-version-check; \
	echo "[2/2] checking that prefect imports and runs"; \
	$(PYTHON_ENV)/bin/prefect version; \
	echo "Flow runner ready in $$((SECONDS-start)) s."
	@touch $(PYTHON_STAMP)

demo: tools
	$(GO) build -o bin/kubectl-prefect ./cmd/kubectl-prefect
	$(GO) run ./hack/demo

# Benchmarks build both binaries as goreleaser does (CGO_ENABLED=0 -trimpath
# -s -w) and print markdown tables for the README; they are not part of `make test`.
bench: tools
	$(GO) run ./bench/submit -runs 1000

bench-manage: tools
	$(GO) run ./bench/manage -jobs 100,10000

bench-runs: tools
	$(GO) run ./bench/runs -jobs 10000

# Release tools (goreleaser, krew, validate-krew-manifest), pinned in hack/release.
RELEASE_STAMP := $(TOOLS)/.release-stamp
release-tools: $(RELEASE_STAMP)

$(RELEASE_STAMP): hack/release/go.mod hack/release/go.sum
	@mkdir -p $(TOOLS)
	@echo "Building goreleaser, krew and validate-krew-manifest into .cache/bin (a few minutes the first time)."
	@start=$$SECONDS; ( while sleep 30; do echo "      still building the release tools: $$((SECONDS-start)) s so far"; done ) & ticker=$$!; \
	  if ! (cd hack/release && $(GO) build -o $(TOOLS)/ github.com/goreleaser/goreleaser/v2 sigs.k8s.io/krew/cmd/krew sigs.k8s.io/krew/cmd/validate-krew-manifest); then kill $$ticker; exit 1; fi; \
	  kill $$ticker 2>/dev/null || true; echo "Release tools ready in $$((SECONDS-start)) s."
	@touch $(RELEASE_STAMP)

# goreleaser check, a snapshot for this machine's platform, the krew manifests, a krew install.
release-check: tools release-tools
	$(GO) run ./hack/release-check

# The same for all six platforms (about 7 minutes more on 2 cores); refreshes plugins/prefect.yaml.
release-snapshot: tools release-tools
	$(GO) run ./hack/release-check -all
	cp dist/krew/prefect.yaml plugins/prefect.yaml

unit:
	$(GO) test -count=1 -short ./...

test: tools
	$(GO) test -count=1 -timeout 30m ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) tool -modfile=hack/lint/go.mod staticcheck ./...

clean:
	rm -rf bin dist .cache/kwok
