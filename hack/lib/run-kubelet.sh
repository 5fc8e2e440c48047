#!/usr/bin/env bash
# Runs the kubelet the way kubeadm's systemd drop-in does: it waits until `kubeadm init`
# has written its configuration, then adds the flags kubeadm recorded for this node.
set -euo pipefail
kubelet=$1 node_ip=$2
while [ ! -f /var/lib/kubelet/config.yaml ]; do sleep 1; done
KUBELET_KUBEADM_ARGS=""
# shellcheck disable=SC1091
[ -f /var/lib/kubelet/kubeadm-flags.env ] && . /var/lib/kubelet/kubeadm-flags.env
# shellcheck disable=SC2086
exec "$kubelet" \
  --bootstrap-kubeconfig=/etc/kubernetes/bootstrap-kubelet.conf \
  --kubeconfig=/etc/kubernetes/kubelet.conf \
  --config=/var/lib/kubelet/config.yaml \
  --node-ip="$node_ip" \
  $KUBELET_KUBEADM_ARGS
