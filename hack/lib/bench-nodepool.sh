# shellcheck shell=bash
# The NodePool part of `make bench`: a pool scaled from 0 to BENCH_WORKERS (default 20) on the
# test cloud's fake compute host. Measures the seconds from `kubectl scale` until every worker's
# server is ACTIVE in Nova and the pool's status.replicas counts them all, and the OpenStack
# requests the operator sent per server (writes: create/delete; reads: the rest), from its
# nestplane_openstack_requests_total. Sourced by hack/bench.sh after common.sh and cluster.sh;
# sets NODEPOOL_FIELDS to the fields for the machine-readable line.
# shellcheck source=../openstack/lib.sh
. "$HACK_DIR/openstack/lib.sh"

BENCH_WORKERS="${BENCH_WORKERS:-20}"
NODEPOOL_TIMEOUT_S="${BENCH_NODEPOOL_TIMEOUT_S:-600}"
NODEPOOL_NS=nestplane-bench-nodepool
NODEPOOL_CLUSTER=bench-np
NODEPOOL=bench-workers
NODEPOOL_LABEL=nestplane.io/node-pool

# The leading replica's /metrics (a standby answers with nestplane_leader 0).
leader_metrics() {
  local path text _
  path="/api/v1/namespaces/${NESTPLANE_NAMESPACE:-nestplane-system}/services/nestplane-metrics:http/proxy/metrics"
  for _ in $(seq 1 20); do
    text="$(kubectl get --raw "$path")" || return 1
    grep -qx 'nestplane_leader 0' <<<"$text" || { printf '%s\n' "$text"; return 0; }
  done
  return 1
}

# OpenStack requests so far: "<writes> <reads>".
openstack_requests() {
  leader_metrics | awk '
    /^nestplane_openstack_requests_total\{/ {
      if ($0 ~ /operation="(create_server|delete_server)"/) w += $NF; else r += $NF
    }
    END { printf "%d %d\n", w, r }'
}

# IDs of the ACTIVE servers among the pool's workers.
active_workers() {
  local ids
  ids="$(kubectl -n "$NODEPOOL_NS" get workers -l "$NODEPOOL_LABEL=$NODEPOOL" \
    -o jsonpath='{range .items[*]}{.status.serverId}{"\n"}{end}' | sed '/^$/d' | sort)"
  [ -n "$ids" ] || { echo 0; return; }
  OS_CLOUD=nestplane OS_CLIENT_CONFIG_FILE="$OS_CLOUDS_YAML" "$OS_BIN/openstack" server list \
    --status ACTIVE -f value -c ID | sort | comm -12 - <(printf '%s\n' "$ids") | wc -l
}

nodepool_cleanup() {
  kubectl -n "$NODEPOOL_NS" delete nodepool "$NODEPOOL" --ignore-not-found --wait=true --timeout=300s >/dev/null || true
  kubectl delete namespace "$NODEPOOL_NS" --ignore-not-found --wait=false >/dev/null
}

bench_nodepool() {
  [ -x "$OS_BIN/openstack" ] || die "no openstack CLI at $OS_BIN: run \`make openstack-up\`"
  [ -f "$OS_CLOUDS_YAML" ] || die "no test cloud at $OS_CLOUDS_YAML: run \`make openstack-up\`"
  kubectl get crd nodepools.nestplane.io >/dev/null 2>&1 || die "no NodePool CRD: apply manifests/crds/"

  kubectl delete namespace "$NODEPOOL_NS" --ignore-not-found --wait=true >/dev/null
  kubectl create namespace "$NODEPOOL_NS" >/dev/null
  trap nodepool_cleanup EXIT
  kubectl -n "$NODEPOOL_NS" create secret generic bench-cloud --from-file=clouds.yaml="$OS_CLOUDS_YAML" >/dev/null
  sed -e "0,/^  name: .*/s//  name: $NODEPOOL_CLUSTER/" -e "/^  namespace:/d" "$SAMPLE" \
    | kubectl -n "$NODEPOOL_NS" apply -f - >/dev/null
  kubectl -n "$NODEPOOL_NS" apply -f - >/dev/null <<EOF
apiVersion: nestplane.io/v1alpha1
kind: NodePool
metadata:
  name: $NODEPOOL
spec:
  clusterName: $NODEPOOL_CLUSTER
  replicas: 0
  openstack:
    cloudSecretRef: { name: bench-cloud }
    cloud: nestplane
    flavor: nestplane.tiny
    image: nestplane-tiny
    networks: [nestplane-net]
    availabilityZone: nestplane-fake
EOF
  kubectl -n "$NODEPOOL_NS" wait --for=condition=Available "hostedcluster/$NODEPOOL_CLUSTER" --timeout="${TIMEOUT_S}s" >/dev/null \
    || die "HostedCluster $NODEPOOL_CLUSTER did not become Available within ${TIMEOUT_S}s"
  # The controller acknowledges the pool (observedGeneration) before the clock starts.
  kubectl -n "$NODEPOOL_NS" wait --for=jsonpath='{.status.observedGeneration}'=1 "nodepool/$NODEPOOL" --timeout=120s >/dev/null \
    || die "NodePool $NODEPOOL was not reconciled within 120s: is the NodePool controller running?"

  local before after start elapsed active replicas
  read -r -a before <<<"$(openstack_requests)"
  start=$(date +%s.%N)
  kubectl -n "$NODEPOOL_NS" scale "nodepool/$NODEPOOL" --replicas="$BENCH_WORKERS" >/dev/null
  while :; do
    replicas="$(kubectl -n "$NODEPOOL_NS" get "nodepool/$NODEPOOL" -o jsonpath='{.status.replicas}')"
    if [ "${replicas:-0}" -eq "$BENCH_WORKERS" ]; then
      active="$(active_workers)"
      [ "$active" -eq "$BENCH_WORKERS" ] && break
    fi
    [ "$(echo "$(date +%s.%N) - $start > $NODEPOOL_TIMEOUT_S" | bc)" -eq 0 ] \
      || die "NodePool $NODEPOOL: status.replicas=${replicas:-0}, ${active:-0} ACTIVE servers after ${NODEPOOL_TIMEOUT_S}s"
    sleep 1
  done
  elapsed="$(echo "scale=1; ($(date +%s.%N) - $start) / 1" | bc)"
  read -r -a after <<<"$(openstack_requests)"
  [ "${after[0]}" -gt "${before[0]}" ] \
    || die "the operator counted no OpenStack writes (nestplane_openstack_requests_total): is its Compute metered?"
  local writes reads
  writes="$(echo "scale=2; (${after[0]} - ${before[0]}) / $BENCH_WORKERS" | bc)"
  reads="$(echo "scale=2; (${after[1]} - ${before[1]}) / $BENCH_WORKERS" | bc)"
  log "NodePool 0->$BENCH_WORKERS: ${elapsed}s until every server is ACTIVE and counted; OpenStack calls per server: $writes writes, $reads reads"
  # shellcheck disable=SC2034 # read by hack/bench.sh
  NODEPOOL_FIELDS="nodepool_scale_s=$elapsed openstack_calls_per_server=$(echo "$writes + $reads" | bc) openstack_writes_per_server=$writes openstack_reads_per_server=$reads"
  nodepool_cleanup
  trap - EXIT
}
