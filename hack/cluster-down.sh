#!/usr/bin/env bash
# Stops everything hack/cluster-up.sh started, by PID: the kubelet, every container it ran,
# then containerd. With WIPE=1 it also deletes the cluster's state (etcd data, PKI, volumes),
# so that the next `make up` starts from scratch.
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/daemon.sh"
. "$HACK_DIR/lib/cluster.sh"

daemon_stop kubelet
if daemon_running containerd; then
  ctr_k8s=(ctr --address "$CONTAINERD_SOCK" -n k8s.io)
  # Containers outlive the kubelet; their shims exit once their tasks are deleted.
  for id in $("${ctr_k8s[@]}" tasks ls -q 2>/dev/null); do
    "${ctr_k8s[@]}" tasks kill -s SIGKILL "$id" >/dev/null 2>&1 || true
  done
  sleep 1
  for id in $("${ctr_k8s[@]}" containers ls -q 2>/dev/null); do
    "${ctr_k8s[@]}" tasks delete -f "$id" >/dev/null 2>&1 || true
    "${ctr_k8s[@]}" containers delete "$id" >/dev/null 2>&1 || true
  done
fi
daemon_stop containerd

# kubelet turns its root dir and each volume into mount points; pod network namespaces are mounts too.
unmount_runtime_mounts

if [ "${WIPE:-0}" = 1 ]; then
  log "wiping cluster state"
  if [ -x "$K8S_BIN/kube-proxy" ]; then "$K8S_BIN/kube-proxy" --cleanup >/dev/null 2>&1 || true; fi
  ip link delete cni0 2>/dev/null || true
  ip link delete nestplane-sink 2>/dev/null || true
  rm -rf /etc/kubernetes /var/lib/etcd /var/lib/kubelet /var/lib/cni /etc/cni/net.d/10-nestplane.conflist \
    "$LOCAL_VOLUMES" "$NESTPLANE_STATE/kubeconfig" "$NESTPLANE_STATE/config"
fi
log "management cluster stopped"
