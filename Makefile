# nestplane developer entry points. `make up` and `make test` are the two that matter most.
SHELL := /usr/bin/env bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

include hack/versions.env
export KUBERNETES_VERSION ETCD_VERSION COREDNS_VERSION HELM_VERSION PAUSE_VERSION

NESTPLANE_STATE ?= /var/lib/nestplane
NESTPLANE_CACHE ?= $(HOME)/.cache/nestplane
export NESTPLANE_STATE NESTPLANE_CACHE
export NESTPLANE_E2E_KUBECONFIG ?= $(NESTPLANE_STATE)/kubeconfig
CARGO ?= cargo

.PHONY: help
help: ## List the targets
	@grep -hE '^[a-zA-Z_-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-18s %s\n", $$1, $$2}'

##@ Cluster
.PHONY: up down cluster-up operator-up binaries images worker-image
up: cluster-up operator-up ## A fresh machine to a running management cluster, the operator and a hosted cluster

operator-up: ## Build the operator image, install the Helm chart, apply the sample HostedCluster
	hack/operator-up.sh

cluster-up: ## Start the single-node management cluster only
	hack/cluster-up.sh

down: ## Stop everything `make up` started; WIPE=1 also deletes cluster state
	hack/cluster-down.sh

binaries: ## Build the pinned Kubernetes, etcd, CoreDNS, provisioner, helm and flannel binaries into the cache
	hack/build-binaries.sh

images: ## Assemble and import the container images (containerd must run)
	hack/images.sh

worker-image: binaries ## The worker VM image (hack/worker-image), rebuilt only when an input changed
	hack/worker-image/build.sh

##@ Development
.PHONY: fmt lint unit
fmt: ## Format Rust code
	$(CARGO) fmt --all

lint: ## rustfmt check, clippy -D warnings, layer rules, shellcheck, gofmt and go vet of hack/cmd
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	hack/check-go.sh vet
	hack/check-layers.sh
	hack/shellcheck.sh

unit: ## Unit tests, and controller tests on a local etcd and kube-apiserver (the NodePool one also on the test cloud): no cluster needed
	$(CARGO) test --workspace --exclude nestplane-e2e
	hack/check-go.sh test

##@ Tests
.PHONY: test e2e smoke
test: lint binaries openstack-up unit up e2e ## Every test: lint, unit (with the built binaries and the test cloud), then integration and e2e against the real cluster
# `binaries` has just built them: a test that would skip for want of one fails instead.
test: export NESTPLANE_TESTENV_REQUIRED := 1

smoke: ## The management-cluster smoke test only
	$(CARGO) test -p nestplane-e2e --test cluster_smoke -- --nocapture

e2e: ## Integration and e2e tests against the running management cluster and the test cloud
	$(CARGO) test -p nestplane-e2e -- --test-threads=2

# openstack-up, openstack-down, test-openstack; makes e2e start the cloud first.
include hack/openstack/openstack.mk


##@ Benchmarks
.PHONY: bench
bench: up ## N HostedClusters at once (BENCH_SIZES="1 5"): time to Available, operator RSS, memory per control plane; the tunnel's exec latency (BENCH_TUNNEL=0 skips)
	hack/bench.sh

##@ Generated files
.PHONY: crds
crds: ## Regenerate manifests/crds, the chart's copy and manifests/rbac
	rm -rf manifests/crds deploy/chart/nestplane/files/crds
	mkdir -p manifests/crds deploy/chart/nestplane/files/crds
	$(CARGO) run -q -p nestplane -- crd --dir manifests/crds
	cp manifests/crds/*.yaml deploy/chart/nestplane/files/crds/
	mkdir -p manifests/rbac
	helm template nestplane deploy/chart/nestplane --kube-version $(KUBERNETES_VERSION) --namespace nestplane-system -s templates/rbac.yaml \
	  -s templates/serviceaccount.yaml > manifests/rbac/nestplane.yaml
