#!/usr/bin/env bash
# Enforces the dependency direction between layers (see README, "Layout"). Crates are the layers
# Cargo keeps apart; `cargo tree` shows what each one links, so an import cannot slip past.
. "$(dirname "$0")/lib/common.sh"
cd "$REPO_ROOT"
fail=0

# forbid <package> <what it must not link, as an ERE of package names> <why>
forbid() {
  local tree found
  # The first line is the package itself.
  tree="$(cargo tree -p "$1" -e normal --prefix none | tail -n +2)" \
    || { echo "layer check: cargo tree -p $1 failed" >&2; fail=1; return; }
  found="$(grep -oE "^($2) v[^ ]+" <<<"$tree" | sort -u | tr '\n' ' ' || true)"
  if [ -n "$found" ]; then
    echo "layer violation: $1 depends on ${found% }; $3" >&2; fail=1
  fi
}

forbid nestplane-pki 'kube|kube-[a-z]+|k8s-openapi|tokio|nestplane(-[a-z0-9]+)?' \
  "certificates are plain data, with no Kubernetes, no async runtime and no other crate of ours"
forbid nestplane-openstack 'kube|kube-[a-z]+|k8s-openapi|nestplane(-[a-z0-9]+)?' \
  "the OpenStack client knows nothing of Kubernetes"
forbid nestplane-api 'tokio|kube-client|kube-runtime|nestplane(-[a-z0-9]+)?' \
  "API types are data: no async runtime, no client, no other crate of ours"
forbid nestplane-tunnel 'kube|kube-[a-z]+|k8s-openapi|nestplane(-[a-z0-9]+)?' \
  "the tunnel authenticates agents through a trait the operator implements: no Kubernetes client"
forbid nestplane-e2e 'nestplane' \
  "the tests check the cluster through the API and never link the operator's internals"

# Builders are pure functions inside the operator crate: no client, no async, no OpenStack.
if [ -d operator/src/builders ] && grep -rnE 'kube::Client|kube::Api\b|tokio::|async fn|crate::openstack|nestplane_openstack|crate::controllers' operator/src/builders; then
  echo "layer violation: operator/src/builders must stay pure" >&2; fail=1
fi
exit $fail
