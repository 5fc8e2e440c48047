#!/usr/bin/env bash
# Assembles the cluster's container images from the cached binaries, under their real
# registry names, and imports them into containerd's k8s.io namespace.
# Archives are cached by name; an image already in containerd is not imported again.
# $NESTPLANE_CACHE/images/node-images.list names the images a worker node needs and their archives.
# Usage: hack/images.sh [--archives-only]   (--archives-only: build the archives and the list, import
# nothing; the worker image needs no containerd on this machine)
. "$(dirname "$0")/lib/common.sh"

IMPORT=1
[ "${1:-}" != --archives-only ] || IMPORT=0

K8S_BIN="$NESTPLANE_CACHE/kubernetes-$KUBERNETES_VERSION/bin"
ETCD_BIN="$NESTPLANE_CACHE/etcd-$ETCD_VERSION/bin"
COREDNS_BIN="$NESTPLANE_CACHE/coredns-$COREDNS_VERSION/bin"
FLANNEL_BIN="$NESTPLANE_CACHE/flannel-$FLANNEL_VERSION/bin"
ARCHIVES="$NESTPLANE_CACHE/images"
CTR=(ctr --address /run/containerd/containerd.sock -n k8s.io)
OCI="$HACK_DIR/lib/oci_image.py"

# Image names used by the cluster and by the operator's builders.
ETCD_IMAGE="registry.k8s.io/etcd:${ETCD_VERSION#v}-0"
COREDNS_IMAGE="registry.k8s.io/coredns/coredns:$COREDNS_VERSION"
PAUSE_IMAGE="registry.k8s.io/pause:$PAUSE_VERSION"
SMOKE_IMAGE="nestplane.local/smoke:dev"
LVP_IMAGE="nestplane.local/local-volume-provisioner:dev"
FLANNEL_IMAGE="ghcr.io/flannel-io/flannel:$FLANNEL_VERSION"
KUBE_PROXY_IMAGE="registry.k8s.io/kube-proxy:$KUBERNETES_VERSION"
# What a worker node runs before any workload: its sandbox, kube-proxy, CoreDNS and the pod
# network. The worker image preloads these; their archives are listed in $NODE_IMAGES_LIST.
NODE_IMAGES=("$PAUSE_IMAGE" "$KUBE_PROXY_IMAGE" "$COREDNS_IMAGE" "$FLANNEL_IMAGE")
NODE_IMAGES_LIST="$ARCHIVES/node-images.list"
# Archive of each image built in this run, by name.
declare -A IMAGE_ARCHIVE=()

# image NAME ARGS...: build the archive (if absent) and import it (if containerd does not have
# this very build). Archives are keyed by their arguments, which name resolved input paths, so a
# rebuilt input (e.g. our own smoke binary) gives a new archive under the same image name.
image() {
  local name=$1; shift
  local base key archive marker
  base="$ARCHIVES/$(echo "$name" | tr '/:' '__')"
  key="$(printf '%s\n' "$@" | sha256sum | cut -c1-12)"
  archive="$base-$key.tar"
  marker="$base.imported"
  mkdir -p "$ARCHIVES"
  if [ ! -f "$archive" ]; then
    python3 "$OCI" --name "$name" --out "$archive.tmp" "$@"
    mv "$archive.tmp" "$archive"
  fi
  IMAGE_ARCHIVE[$name]=$archive
  [ "$IMPORT" = 1 ] || return 0
  if [ "$(cat "$marker" 2>/dev/null)" != "$key" ] \
    || ! "${CTR[@]}" images ls -q "name==$name" | grep -qx "$name"; then
    "${CTR[@]}" images import "$archive" >/dev/null
    echo "$key" >"$marker"
    log "imported $name"
  fi
}

iptables_links() {
  local n
  for n in iptables iptables-save iptables-restore ip6tables ip6tables-save ip6tables-restore; do
    printf '%s\n' --symlink "/usr/sbin/$n:xtables-nft-multi" --symlink "/usr/sbin/${n/tables/tables-nft}:xtables-nft-multi"
  done
}

busybox_links() {
  local a
  /bin/busybox --list | while read -r a; do printf '%s\n' --symlink "/bin/$a:busybox"; done
}

for component in kube-apiserver kube-controller-manager kube-scheduler; do
  image "registry.k8s.io/$component:$KUBERNETES_VERSION" \
    --file "$K8S_BIN/$component:/usr/local/bin/$component" --entrypoint "/usr/local/bin/$component"
done
# kube-proxy programs the host's nf_tables through iptables-nft, which comes from this machine.
mapfile -t iptables_args < <(iptables_links)
image "$KUBE_PROXY_IMAGE" \
  --file "$K8S_BIN/kube-proxy:/usr/local/bin/kube-proxy" \
  --host-binary /usr/sbin/xtables-nft-multi:/usr/sbin/xtables-nft-multi \
  --host-binary /usr/sbin/conntrack:/usr/sbin/conntrack \
  --host-tree "$(dirname "$(readlink -f /usr/lib/*/libxtables.so.12)")/xtables" \
  "${iptables_args[@]}" --dir /run --dir /tmp --entrypoint /usr/local/bin/kube-proxy
image "$ETCD_IMAGE" --file "$ETCD_BIN/etcd:/usr/local/bin/etcd" \
  --file "$ETCD_BIN/etcdctl:/usr/local/bin/etcdctl" --dir /var/lib/etcd --entrypoint /usr/local/bin/etcd
image "$COREDNS_IMAGE" --file "$COREDNS_BIN/coredns:/coredns" --entrypoint /coredns
image "$PAUSE_IMAGE" --file "$(readlink -f "$NESTPLANE_CACHE/pause-current")/bin/pause:/pause" --entrypoint /pause
image "$LVP_IMAGE" --file "$(readlink -f "$NESTPLANE_CACHE/local-volume-provisioner-current")/bin/local-volume-provisioner:/usr/local/bin/local-volume-provisioner" \
  --dir /tmp --entrypoint /usr/local/bin/local-volume-provisioner
image "$SMOKE_IMAGE" --file "$(readlink -f "$NESTPLANE_CACHE/smoke-current")/bin/smoke:/usr/local/bin/smoke" \
  --entrypoint /usr/local/bin/smoke
# flanneld writes its masquerading and forwarding rules through the same iptables-nft as kube-proxy;
# busybox runs the DaemonSet's script that writes the node's CNI config from flanneld's lease.
mapfile -t busybox_args < <(busybox_links)
image "$FLANNEL_IMAGE" --file "$FLANNEL_BIN/flanneld:/opt/bin/flanneld" \
  --host-binary /usr/sbin/xtables-nft-multi:/usr/sbin/xtables-nft-multi \
  --host-tree "$(dirname "$(readlink -f /usr/lib/*/libxtables.so.12)")/xtables" \
  "${iptables_args[@]}" --file /bin/busybox:/bin/busybox "${busybox_args[@]}" \
  --dir /run/flannel --dir /tmp --entrypoint /opt/bin/flanneld

# One line per node image: its name and its archive (what `ctr images import` takes).
for name in "${NODE_IMAGES[@]}"; do
  printf '%s %s\n' "$name" "${IMAGE_ARCHIVE[$name]}"
done >"$NODE_IMAGES_LIST.tmp"
mv "$NODE_IMAGES_LIST.tmp" "$NODE_IMAGES_LIST"
