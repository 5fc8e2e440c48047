#!/usr/bin/env bash
# Enforces the dependency direction between layers (see README, "Layout").
. "$(dirname "$0")/lib/common.sh"
cd "$REPO_ROOT"
fail=0

# The pki crate is pure: no Kubernetes client, no async runtime.
if cargo tree -p nestplane-pki -e normal --prefix none 2>/dev/null | grep -qE '^(kube|k8s-openapi|tokio) '; then
  echo "layer violation: nestplane-pki depends on kube, k8s-openapi or tokio" >&2; fail=1
fi
# Builders are pure functions: no client, no async, no OpenStack.
if [ -d operator/src/builders ] && grep -rnE 'kube::Client|kube::Api\b|tokio::|async fn|crate::openstack|crate::controllers' operator/src/builders; then
  echo "layer violation: operator/src/builders must stay pure" >&2; fail=1
fi
# API types know nothing of controllers, builders or OpenStack.
if [ -d operator/src/api ] && grep -rnE 'crate::(controllers|builders|openstack)|kube::Client|async fn' operator/src/api; then
  echo "layer violation: operator/src/api must hold types only" >&2; fail=1
fi
# The OpenStack client knows nothing of Kubernetes.
if [ -d operator/src/openstack ] && grep -rnE '\b(kube|k8s_openapi)::' operator/src/openstack; then
  echo "layer violation: operator/src/openstack must not use kube" >&2; fail=1
fi
exit $fail
