#!/usr/bin/env bash
# A fresh machine to a running single-node management cluster:
# packages, binaries (cached), images, containerd, kubeadm init + kubelet, CNI, kube-proxy,
# CoreDNS and a default StorageClass. Safe to run again: a running cluster is left as it is,
# and a stopped one (`make down` without WIPE) is started again with its data.
. "$(dirname "$0")/lib/common.sh"
. "$HACK_DIR/lib/daemon.sh"
. "$HACK_DIR/lib/cluster.sh"

[ "$(id -u)" -eq 0 ] || die "run as root: the cluster needs containerd, iptables and mounts"

"$HACK_DIR/install-packages.sh"
"$HACK_DIR/build-binaries.sh" pause smoke etcd kubernetes coredns local-volume-provisioner helm flannel

NODE_IP="$(node_ip)"
NODE_NAME="$(node_name)"
ETCD_TAG="${ETCD_VERSION#v}-0"
render() {
  sed -e "s#@NODE_IP@#$NODE_IP#g; s#@NODE_NAME@#$NODE_NAME#g; s#@KUBERNETES_VERSION@#$KUBERNETES_VERSION#g" \
      -e "s#@ETCD_TAG@#$ETCD_TAG#g; s#@COREDNS_VERSION@#$COREDNS_VERSION#g; s#@POD_CIDR@#$POD_CIDR#g" \
      -e "s#@NODE_POD_CIDR@#$NODE_POD_CIDR#g; s#@SERVICE_CIDR@#$SERVICE_CIDR#g" \
      -e "s#@PAUSE_IMAGE@#registry.k8s.io/pause:$PAUSE_VERSION#g; s#@LOCAL_VOLUMES@#$LOCAL_VOLUMES#g" \
      -e "s#@LVP_IMAGE@#nestplane.local/local-volume-provisioner:dev#g" "$1"
}

mkdir -p "$NESTPLANE_STATE"/{run,logs,config} "$LOCAL_VOLUMES" /etc/cni/net.d /lib/modules /etc/kubernetes/manifests

# Kernel settings kube-proxy and the bridge CNI rely on.
sysctl -qw net.ipv4.ip_forward=1
sysctl -qw net.bridge.bridge-nf-call-iptables=1 net.bridge.bridge-nf-call-ip6tables=1 2>/dev/null \
  || log "warning: bridge netfilter sysctls not available"

# Cluster-internal ranges never leave the machine: a Service IP that kube-proxy has no rule for yet
# would otherwise follow the default route. A bridge without ports sinks them; kube-proxy's DNAT
# happens before routing, and the node's own pod range is more specific (cni0).
ip link show nestplane-sink >/dev/null 2>&1 || ip link add nestplane-sink type bridge
ip link set nestplane-sink up
ip route replace "$SERVICE_CIDR" dev nestplane-sink
ip route replace "$POD_CIDR" dev nestplane-sink

# Convenience: the cluster's command-line tools on PATH.
for tool in kubectl kubeadm; do ln -sf "$K8S_BIN/$tool" "/usr/local/bin/$tool"; done
ln -sf "$NESTPLANE_CACHE/helm-$HELM_VERSION/bin/helm" /usr/local/bin/helm
ln -sf "$NESTPLANE_CACHE/etcd-$ETCD_VERSION/bin/etcdctl" /usr/local/bin/etcdctl

render "$HACK_DIR/manifests/cni.conflist" >/etc/cni/net.d/10-nestplane.conflist
render "$HACK_DIR/manifests/containerd.toml" >"$NESTPLANE_STATE/config/containerd.toml"
# Runtime processes that died without `make down` (a reboot, a killed session) leave their mounts.
if ! daemon_running containerd && ! daemon_running kubelet && ! pgrep -f containerd-shim >/dev/null; then
  unmount_runtime_mounts
fi
daemon_start containerd containerd --config "$NESTPLANE_STATE/config/containerd.toml"
wait_for "containerd" 60 ctr --address "$CONTAINERD_SOCK" version

"$HACK_DIR/images.sh"

mkdir -p "$KUBELET_DROP_IN_DIR"
install -m 0644 "$HACK_DIR/manifests/kubelet-drop-in.conf" "$KUBELET_DROP_IN_DIR/50-nestplane.conf"
daemon_start kubelet "$HACK_DIR/lib/run-kubelet.sh" "$K8S_BIN/kubelet" "$NODE_IP" "$KUBELET_DROP_IN_DIR"

if [ -f /etc/kubernetes/admin.conf ]; then
  log "cluster state found in /etc/kubernetes: starting it again"
else
  render "$HACK_DIR/manifests/kubeadm.yaml" >"$NESTPLANE_STATE/config/kubeadm.yaml"
  log "kubeadm init (node $NODE_NAME, $NODE_IP)"
  "$K8S_BIN/kubeadm" init --config "$NESTPLANE_STATE/config/kubeadm.yaml" \
    >"$NESTPLANE_STATE/logs/kubeadm-init.log" 2>&1 \
    || { tail -40 "$NESTPLANE_STATE/logs/kubeadm-init.log" >&2; die "kubeadm init failed (log above)"; }
fi
install -m 0600 /etc/kubernetes/admin.conf "$KUBECONFIG_PATH"

# After a restart the API still shows the old pod and node states; a healthy kubelet refreshes them.
wait_for "the kubelet" 180 curl -sf http://127.0.0.1:10248/healthz

wait_for "the API server" 180 kubectl get --raw /readyz
# A cluster made with rancher's local-path-provisioner: a StorageClass's provisioner cannot change in
# place, so the class is made again and rancher's provisioner removed; ours deletes its volumes.
if [ "$(kubectl get storageclass local-path -o jsonpath='{.provisioner}' 2>/dev/null)" = rancher.io/local-path ]; then
  log "replacing rancher's local-path-provisioner with the local-volume provisioner"
  kubectl delete storageclass local-path >/dev/null
  kubectl delete namespace local-path-storage --ignore-not-found >/dev/null
  kubectl delete clusterrole,clusterrolebinding local-path-provisioner-role local-path-provisioner-bind \
    --ignore-not-found >/dev/null
fi
render "$HACK_DIR/manifests/local-volume-provisioner.yaml" | kubectl apply -f - >/dev/null
wait_for "node $NODE_NAME Ready" 180 kubectl wait --for=condition=Ready "node/$NODE_NAME" --timeout=5s
wait_for "CoreDNS" 180 kubectl -n kube-system rollout status deployment/coredns --timeout=5s
wait_for "kube-proxy" 180 kubectl -n kube-system rollout status daemonset/kube-proxy --timeout=5s
wait_for "the local-volume provisioner" 180 kubectl -n local-volumes rollout status daemonset/local-volume-provisioner --timeout=5s

kubectl get nodes -o wide >&2
log "management cluster is up"
echo "export KUBECONFIG=$KUBECONFIG_PATH"
