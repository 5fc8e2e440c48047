# shellcheck shell=bash
# Settings here are read by the scripts that source this file.
# shellcheck disable=SC2034
# Paths and helpers shared by the management-cluster scripts.
K8S_BIN="$NESTPLANE_CACHE/kubernetes-$KUBERNETES_VERSION/bin"
KUBECONFIG_PATH="$NESTPLANE_STATE/kubeconfig"
KUBELET_DROP_IN_DIR=/etc/kubernetes/kubelet.conf.d
CONTAINERD_SOCK=/run/containerd/containerd.sock
LOCAL_VOLUMES="$NESTPLANE_STATE/volumes"

kubectl() { "$K8S_BIN/kubectl" --kubeconfig "$KUBECONFIG_PATH" "$@"; }

# The node's address: NESTPLANE_NODE_IP, else the address of the default-route interface
# (what kubeadm itself picks), else the first global IPv4 address.
node_ip() {
  if [ -n "${NESTPLANE_NODE_IP:-}" ]; then echo "$NESTPLANE_NODE_IP"; return; fi
  local dev ip
  dev="$(ip -4 route show default | awk '{print $5; exit}')"
  [ -n "$dev" ] && ip="$(ip -4 -o addr show dev "$dev" scope global | awk '{print $4; exit}' | cut -d/ -f1)"
  [ -n "${ip:-}" ] || ip="$(ip -4 -o addr show scope global | awk '{print $4; exit}' | cut -d/ -f1)"
  [ -n "$ip" ] || die "no global IPv4 address for the node; set NESTPLANE_NODE_IP"
  echo "$ip"
}

node_name() { hostname | tr '[:upper:]' '[:lower:]'; }

# Unmounts what the kubelet and containerd mounted (the kubelet's root dir and volumes, pod
# network namespaces, container rootfs). Only safe with both stopped: a mount left from a runtime
# that died without `make down` is stale, and a pod netns mount shadowed by a later bind mount of
# /run/netns can never be unlinked by the new runtime (every teardown fails with EBUSY).
unmount_runtime_mounts() {
  awk '$2 ~ "^(/var/lib/kubelet|/run/netns|/run/containerd)" {print $2}' /proc/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
}
