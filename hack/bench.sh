#!/usr/bin/env bash
# Benchmark: N HostedClusters applied at once (N from BENCH_SIZES, default "1 5"), then a
# NodePool scaled from 0 to 20 workers (hack/lib/bench-nodepool.sh), then the tunnel's exec
# latency against direct routing (tests/tests/tunnel.rs, a worker VM).
# For each N: time from apply to Available (median, max), the operator's peak RSS, and the
# management-cluster memory per hosted control plane, with the management cluster's own kubeadm
# control plane (same Kubernetes version, static pods) measured in the same run as the baseline.
# The last line is machine-readable.
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/daemon.sh"
. "$HACK_DIR/lib/cluster.sh"

SIZES="${BENCH_SIZES:-1 5}"
SAMPLE="$REPO_ROOT/manifests/samples/hostedcluster.yaml"
TIMEOUT_S="${BENCH_TIMEOUT_S:-600}"

# Resident memory of a pod in MiB, from its cgroup (v1 memory controller): usage minus page cache.
pod_memory_mib() {
  local uid=$1 dir
  dir="$(find /sys/fs/cgroup/memory/kubepods* -maxdepth 2 -type d -name "*pod${uid}*" 2>/dev/null | head -1)"
  [ -n "$dir" ] || { echo 0; return; }
  awk '/^total_rss /{rss=$2} /^total_mapped_file /{m=$2} END {printf "%.1f", (rss+m)/1048576}' "$dir/memory.stat"
}

namespace_memory_mib() {
  local total=0 uid
  for uid in $(kubectl -n "$1" get pods -o jsonpath='{.items[*].metadata.uid}'); do
    total="$(echo "$total + $(pod_memory_mib "$uid")" | bc -l)"
  done
  printf '%.1f' "$total"
}

# Memory of the management cluster's own control plane (kubeadm static pods).
baseline_mib() {
  local total=0 uid
  # Static pods' cgroups are named after the kubelet's config hash, not the mirror pod's UID.
  for uid in $(kubectl -n kube-system get pods -l tier=control-plane \
      -o jsonpath='{.items[*].metadata.annotations.kubernetes\.io/config\.hash}'); do
    total="$(echo "$total + $(pod_memory_mib "$uid")" | bc -l)"
  done
  printf '%.1f' "$total"
}

# The leader's process: with two replicas only the Lease holder reconciles (and grows); its pod
# name is in the process's environment (POD_NAME).
operator_pid() {
  local leader pid
  leader="$(kubectl -n nestplane-system get lease nestplane-leader -o jsonpath='{.spec.holderIdentity}' 2>/dev/null)"
  for pid in $(pgrep -f 'nestplane run'); do
    if [ -z "$leader" ] || tr '\0' '\n' <"/proc/$pid/environ" 2>/dev/null | grep -qx "POD_NAME=$leader"; then
      echo "$pid"
      return
    fi
  done
}
operator_peak_rss_mib() {
  local pid; pid="$(operator_pid)"
  [ -n "$pid" ] || { echo 0; return; }
  awk '/^VmHWM:/ {printf "%.1f", $2/1024}' "/proc/$pid/status"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }

[ -f "$SAMPLE" ] || die "no sample at $SAMPLE"
command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null
[ -n "$(operator_pid)" ] || die "the operator is not running: run \`make up\` first"

baseline="$(baseline_mib)"
log "baseline: the management cluster's kubeadm control plane uses ${baseline} MiB"
line=""
for n in $SIZES; do
  ns="nestplane-bench-$n"
  kubectl delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
  kubectl create namespace "$ns" >/dev/null
  start=$(date +%s.%N)
  for i in $(seq 1 "$n"); do
    sed -e "0,/^  name: .*/s//  name: bench-$i/" -e "/^  namespace:/d" "$SAMPLE" | kubectl -n "$ns" apply -f - >/dev/null
  done
  times=()
  for i in $(seq 1 "$n"); do
    kubectl -n "$ns" wait --for=condition=Available "hostedcluster/bench-$i" --timeout="${TIMEOUT_S}s" >/dev/null \
      || die "bench-$i in $ns did not become Available within ${TIMEOUT_S}s"
    t="$(kubectl -n "$ns" get "hostedcluster/bench-$i" \
      -o jsonpath='{.status.conditions[?(@.type=="Available")].lastTransitionTime}')"
    times+=("$(echo "$(date -d "$t" +%s) - ${start%.*}" | bc)")
  done
  sleep 10 # let the control planes settle before reading memory
  med="$(printf '%s\n' "${times[@]}" | median)"
  max="$(printf '%s\n' "${times[@]}" | sort -n | tail -1)"
  mem="$(namespace_memory_mib "$ns")"
  per="$(echo "scale=1; $mem / $n" | bc)"
  ratio="$(echo "scale=2; $per / $baseline" | bc)"
  rss="$(operator_peak_rss_mib)"
  log "n=$n: Available median ${med}s max ${max}s; ${per} MiB per control plane (${ratio}x the kubeadm control plane); operator peak RSS ${rss} MiB"
  line="bench: n=$n available_median_s=$med available_max_s=$max operator_peak_rss_mib=$rss per_control_plane_mib=$per per_control_plane_vs_kubeadm=$ratio"
  echo "$line"
  kubectl delete namespace "$ns" --wait=false >/dev/null
done

# A NodePool scaled 0 -> BENCH_WORKERS on the test cloud's fake host (BENCH_NODEPOOL=0 skips it).
if [ "${BENCH_NODEPOOL:-1}" = 1 ]; then
  # shellcheck source=lib/bench-nodepool.sh
  . "$HACK_DIR/lib/bench-nodepool.sh"
  bench_nodepool
  echo "$line $NODEPOOL_FIELDS"
fi

# The tunnel (BENCH_TUNNEL=0 skips it): exec round trips through a worker VM's agent against the
# same exec routed directly, measured in one run by tests/tests/tunnel.rs, and the tunnel
# server's memory with 50 streams open. It boots a VM under emulation: about 10 minutes.
if [ "${BENCH_TUNNEL:-1}" = 1 ]; then
  log "tunnel: a worker VM, exec through the tunnel and direct (tests/tests/tunnel.rs)"
  tunnel_log="$(mktemp)"
  (cd "$REPO_ROOT" && cargo test -p nestplane-e2e --test tunnel -- --nocapture) >"$tunnel_log" 2>&1 \
    || { tail -30 "$tunnel_log" >&2; die "the tunnel test failed (log: $tunnel_log)"; }
  tunnel_fields="$(sed -n 's/^tunnel_bench //p' "$tunnel_log" | tail -1)"
  [ -n "$tunnel_fields" ] || die "the tunnel test printed no tunnel_bench line (log: $tunnel_log)"
  rm -f "$tunnel_log"
  echo "$line ${NODEPOOL_FIELDS:-} $tunnel_fields"
fi
