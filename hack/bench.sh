#!/usr/bin/env bash
# Benchmark: N HostedClusters applied at once (N from BENCH_SIZES, default "1 5"), then a
# NodePool scaled from 0 to 20 workers (hack/lib/bench-nodepool.sh), then the tunnel's exec
# latency against direct routing (tests/tests/tunnel.rs, a worker VM).
# First the floor (hack/lib/bench-floor.sh): etcd and kube-apiserver as plain processes until
# /readyz answers. For each N: the time from apply to each milestone of each cluster
# (tests/src/bin/bench-startup.rs), Available (median, max; one cluster is timed three times)
# and against the floor, the operator's peak RSS, and the management-cluster memory per hosted
# control plane (read after each run; the median), with the management cluster's own kubeadm
# control plane (same Kubernetes version, static pods) measured in the same run as the baseline.
# The last line is machine-readable.
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/daemon.sh"
. "$HACK_DIR/lib/cluster.sh"

SIZES="${BENCH_SIZES:-1 5}"
SAMPLE="$REPO_ROOT/manifests/samples/hostedcluster.yaml"
TIMEOUT_S="${BENCH_TIMEOUT_S:-600}"

# Resident memory in MiB of the pods whose cgroup ids (a pod's UID; a static pod's config hash) are
# given, summed from their cgroups (v1 memory controller): usage minus page cache (anonymous memory
# plus the mapped files charged to them), then the anonymous part alone. The kernel charges a page
# of a shared image file to the first pod that reads it, so the mapped part moves between runs by
# which pod that was; the anonymous part does not.
pods_memory_mib() {
  local id dir stats=()
  for id in "$@"; do
    dir="$(find /sys/fs/cgroup/memory/kubepods* -maxdepth 2 -type d -name "*pod${id}*" 2>/dev/null | head -1)"
    [ -z "$dir" ] || stats+=("$dir/memory.stat")
  done
  [ "${#stats[@]}" -gt 0 ] || { echo "0.0 0.0"; return; }
  awk '/^total_rss /{rss+=$2} /^total_mapped_file /{m+=$2}
    END {printf "%.1f %.1f\n", (rss+m)/1048576, rss/1048576}' "${stats[@]}"
}

# A namespace's pods: their memory and its anonymous part.
namespace_memory_mib() {
  local uids=()
  read -ra uids <<<"$(kubectl -n "$1" get pods -o jsonpath='{.items[*].metadata.uid}')"
  pods_memory_mib "${uids[@]}"
}

# A namespace's memory and its anonymous part, each the median of five readings two seconds
# apart: one reading moves with where each Go runtime is in its garbage-collection cycle.
settled_memory_mib() {
  local i all=() anon=() reading
  for i in 1 2 3 4 5; do
    [ "$i" = 1 ] || sleep 2
    read -ra reading <<<"$(namespace_memory_mib "$1")"
    all+=("${reading[0]}") anon+=("${reading[1]}")
  done
  echo "$(printf '%s\n' "${all[@]}" | median) $(printf '%s\n' "${anon[@]}" | median)"
}

# Memory of the management cluster's own control plane (kubeadm static pods).
baseline_mib() {
  local hashes=() memory
  # Static pods' cgroups are named after the kubelet's config hash, not the mirror pod's UID.
  read -ra hashes <<<"$(kubectl -n kube-system get pods -l tier=control-plane \
    -o jsonpath='{.items[*].metadata.annotations.kubernetes\.io/config\.hash}')"
  read -r memory _ <<<"$(pods_memory_mib "${hashes[@]}")"
  echo "$memory"
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

# The peak over this bench only, not over everything the operator did since it started: writing 5
# to clear_refs resets the process's VmHWM to its current RSS (proc(5)).
reset_operator_peak_rss() {
  local pid; pid="$(operator_pid)"
  [ -z "$pid" ] || echo 5 >"/proc/$pid/clear_refs"
}

median() { sort -n | awk '{a[NR]=$1} END {if (NR%2) print a[(NR+1)/2]; else printf "%.2f\n", (a[NR/2]+a[NR/2+1])/2}'; }

[ -f "$SAMPLE" ] || die "no sample at $SAMPLE"
command -v bc >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bc >/dev/null
[ -n "$(operator_pid)" ] || die "the operator is not running: run \`make up\` first"

# shellcheck source=lib/bench-floor.sh
. "$HACK_DIR/lib/bench-floor.sh"
bench_floor

log "building the startup recorder (tests/src/bin/bench-startup.rs)"
(cd "$REPO_ROOT" && cargo build -q -p nestplane-e2e --bin bench-startup)
STARTUP="$REPO_ROOT/target/debug/bench-startup"

reset_operator_peak_rss
baseline="$(baseline_mib)"
log "baseline: the management cluster's kubeadm control plane uses ${baseline} MiB"
# One field of the recorder's summary line.
field() { printf '%s\n' "$summary" | tr ' ' '\n' | sed -n "s/^$1=//p"; }
line=""
for n in $SIZES; do
  # One cluster is timed BENCH_RUNS (3) times, each in a fresh namespace; larger sets once.
  runs=1
  [ "$n" != 1 ] || runs="${BENCH_RUNS:-3}"
  available=() usable=() per_cp=() per_cp_anon=()
  for run in $(seq 1 "$runs"); do
    ns="nestplane-bench-$n-$run"
    kubectl delete namespace "$ns" --ignore-not-found --wait=true >/dev/null
    kubectl create namespace "$ns" >/dev/null
    out="$(BENCH_TIMEOUT_S="$TIMEOUT_S" "$STARTUP" "$ns" "$n" "$SAMPLE")" \
      || die "the HostedClusters in $ns did not all become Available and usable"
    printf '%s\n' "$out" | sed -n "s/^startup: /startup: run=$run /p"
    summary="$(printf '%s\n' "$out" | sed -n 's/^startup_summary: //p')"
    if [ "$n" = 1 ]; then
      available+=("$(field available_median_s)") usable+=("$(field admin_usable_median_s)")
    else
      available+=("$(field available_max_s)") usable+=("$(field admin_usable_max_s)")
      med_n="$(field available_median_s)"
    fi
    # Memory is read after every run (a single control plane's reading moved by up to 25 MiB from one
    # to the next), once they have settled.
    sleep 10
    read -r mem anon <<<"$(settled_memory_mib "$ns")"
    per_cp+=("$(echo "scale=1; $mem / $n" | bc)") per_cp_anon+=("$(echo "scale=1; $anon / $n" | bc)")
    if [ "$run" != "$runs" ]; then
      kubectl delete namespace "$ns" --wait=true >/dev/null
    fi
  done
  per="$(printf '%s\n' "${per_cp[@]}" | median)"
  per_anon="$(printf '%s\n' "${per_cp_anon[@]}" | median)"
  ratio="$(echo "scale=2; $per / $baseline" | bc)"
  rss="$(operator_peak_rss_mib)"
  if [ "$n" = 1 ]; then
    med="$(printf '%s\n' "${available[@]}" | median)"
    max="$(printf '%s\n' "${available[@]}" | sort -n | tail -1)"
  else
    med="$med_n"
    max="${available[0]}"
  fi
  usable_s="$(printf '%s\n' "${usable[@]}" | median)"
  vs_floor="$(echo "scale=2; $med / $FLOOR_S" | bc)"
  log "n=$n: Available median ${med}s max ${max}s (${vs_floor}x the floor of ${FLOOR_S}s), admin usable ${usable_s}s; ${per} MiB per control plane (${per_anon} anonymous; ${ratio}x the kubeadm control plane); operator peak RSS ${rss} MiB"
  line="bench: n=$n available_median_s=$med available_max_s=$max admin_usable_s=$usable_s floor_s=$FLOOR_S available_vs_floor=$vs_floor operator_peak_rss_mib=$rss per_control_plane_mib=$per per_control_plane_anon_mib=$per_anon per_control_plane_vs_kubeadm=$ratio"
  echo "$line"
  kubectl delete namespace "$ns" --wait=true >/dev/null
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
