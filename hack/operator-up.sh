#!/usr/bin/env bash
# Installs the operator into the management cluster with its Helm chart (image built and
# imported locally), applies the sample HostedCluster and waits until it is Available.
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/daemon.sh"
. "$HACK_DIR/lib/cluster.sh"

RELEASE=nestplane
RELEASE_NAMESPACE="${NESTPLANE_NAMESPACE:-nestplane-system}"
SAMPLE="$REPO_ROOT/manifests/samples/hostedcluster.yaml"
HELM="$NESTPLANE_CACHE/helm-$HELM_VERSION/bin/helm"

image="$("$HACK_DIR/operator-image.sh")"
ln -sf "${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/nestplane" /usr/local/bin/nestplane

# A CRD created before the chart (e.g. with kubectl) is adopted rather than replaced:
# deleting a CRD would delete every HostedCluster.
crd=hostedclusters.nestplane.io
if kubectl get crd "$crd" >/dev/null 2>&1 && ! kubectl get crd "$crd" -o jsonpath='{.metadata.annotations.meta\.helm\.sh/release-name}' | grep -q .; then
  kubectl annotate crd "$crd" --overwrite meta.helm.sh/release-name="$RELEASE" meta.helm.sh/release-namespace="$RELEASE_NAMESPACE" >/dev/null
  kubectl label crd "$crd" --overwrite app.kubernetes.io/managed-by=Helm >/dev/null
fi

log "installing the operator ($image)"
"$HELM" upgrade --install "$RELEASE" "$REPO_ROOT/deploy/chart/nestplane" \
  --kubeconfig "$KUBECONFIG_PATH" --namespace "$RELEASE_NAMESPACE" --create-namespace \
  --set image.repository="${image%:*}" --set image.tag="${image##*:}" --set image.pullPolicy=Never \
  --set tunnel.image="$image" \
  --wait --timeout 3m >/dev/null
kubectl -n "$RELEASE_NAMESPACE" rollout status deployment/"$RELEASE" --timeout=120s >/dev/null

kubectl apply -f "$SAMPLE" >/dev/null
name="$(sed -n 's/^  name: //p' "$SAMPLE" | head -1)"
namespace="$(sed -n 's/^  namespace: //p' "$SAMPLE" | head -1)"
log "waiting for HostedCluster $namespace/$name to become Available"
start=$SECONDS
kubectl -n "$namespace" wait --for=condition=Available "hostedcluster/$name" --timeout=300s >/dev/null \
  || { kubectl -n "$namespace" describe hostedcluster "$name" >&2; die "HostedCluster $name did not become Available"; }
log "HostedCluster $namespace/$name is Available after $((SECONDS - start))s"

hosted_kubeconfig="$NESTPLANE_STATE/$name.kubeconfig"
KUBECONFIG="$KUBECONFIG_PATH" nestplane kubeconfig "$name" -n "$namespace" >"$hosted_kubeconfig"
chmod 0600 "$hosted_kubeconfig"
kubectl -n "$namespace" get hostedcluster "$name" >&2
cat >&2 <<MSG

The hosted cluster $name answers at $(kubectl -n "$namespace" get hostedcluster "$name" -o jsonpath='{.status.endpoint}'):
  kubectl --kubeconfig $hosted_kubeconfig get --raw /readyz
  nestplane kubeconfig $name -n $namespace   # prints the same kubeconfig
MSG
