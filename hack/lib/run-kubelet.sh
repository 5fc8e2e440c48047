#!/usr/bin/env bash
# Runs the kubelet the way kubeadm's systemd drop-in does: it waits until `kubeadm init`
# has written its configuration, then adds the flags kubeadm recorded for this node.
set -euo pipefail
kubelet=$1 node_ip=$2 drop_in_dir=$3
while [ ! -f /var/lib/kubelet/config.yaml ]; do sleep 1; done
KUBELET_KUBEADM_ARGS=""
# kubeadm writes this file at init time, so there is nothing to follow while linting.
# shellcheck source=/dev/null
[ -f /var/lib/kubelet/kubeadm-flags.env ] && . /var/lib/kubelet/kubeadm-flags.env
# kubeadm records its flags as one space-separated string.
read -ra kubeadm_args <<<"$KUBELET_KUBEADM_ARGS"
exec "$kubelet" \
  --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
  --kubeconfig=/etc/kubernetes/kubelet.conf \
  --config=/var/lib/kubelet/config.yaml \
  --config-dir="$drop_in_dir" \
  --node-ip="$node_ip" \
  "${kubeadm_args[@]}"
