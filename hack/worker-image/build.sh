#!/usr/bin/env bash
# Builds the worker image: a bootable qcow2 (MBR, extlinux, one ext4 root partition) of Debian 13
# with containerd, the kubelet and kubeadm from the cluster's own builds, and the node's container
# images already in containerd. See hack/worker-image/README.md.
#
# The result is cached by the content of every input (this directory, the Kubernetes binaries,
# the node image archives): $NESTPLANE_CACHE/worker-image-<key>/nestplane-worker.qcow2, linked
# from $NESTPLANE_CACHE/openstack-images/nestplane-worker.qcow2, which `make openstack-up` uploads.
. "$(dirname "$0")/../lib/common.sh"

# Debian 13 "trixie": its containerd is 1.7; bookworm's 1.6 is past its end of life and kubeadm's
# preflight warns about it. Packages come from the mirror unpinned: the cache key names our
# inputs, so a rebuild after an input changes picks up Debian's current packages.
SUITE=trixie
MIRROR="${NESTPLANE_DEBIAN_MIRROR:-http://deb.debian.org/debian}"
IMAGE_DIR="$HACK_DIR/worker-image"
K8S_BIN="$NESTPLANE_CACHE/kubernetes-$KUBERNETES_VERSION/bin"
NODE_IMAGES_LIST="$NESTPLANE_CACHE/images/node-images.list"
PAUSE_IMAGE="registry.k8s.io/pause:$PAUSE_VERSION"
OUT_LINK="$NESTPLANE_CACHE/openstack-images/nestplane-worker.qcow2"
# Downloaded .debs, kept across builds so a rebuild downloads only what changed.
DEB_CACHE="$NESTPLANE_CACHE/worker-image-debs"
WORK="$NESTPLANE_CACHE/worker-image-build"
ROOT="$WORK/root"
# The partition starts at 1 MiB, after the MBR and the usual alignment gap.
PART_OFFSET=$((1024 * 1024))
ROOT_LABEL=nestplane-root

# What the guest runs. No SSH server: nodes are managed through Kubernetes, and without one
# there are no host keys to keep out of the image.
PACKAGES=(
  linux-image-cloud-amd64 initramfs-tools systemd-sysv udev dbus
  systemd-resolved systemd-timesyncd
  cloud-init cloud-guest-utils fdisk e2fsprogs
  containerd runc containernetworking-plugins
  conntrack socat iptables ethtool iproute2 kmod procps ca-certificates
)
# What this machine needs to build it.
HOST_PACKAGES=(debootstrap extlinux syslinux-common fdisk qemu-utils e2fsprogs)

host_packages() {
  local missing=() p
  for p in "${HOST_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing: ${missing[*]}"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# The cache key: every file of this directory (but its documentation) by path and content, the binaries and the image
# archives by content, and the settings above that change what is built.
cache_key() {
  {
    echo "$SUITE $PAUSE_IMAGE"
    (cd "$IMAGE_DIR" && find . -type f ! -name "*.md" -print0 | sort -z | xargs -0 sha256sum)
    (cd "$K8S_BIN" && sha256sum kubelet kubeadm kubectl)
    while read -r name archive; do
      echo "$name $(sha256sum <"$archive" | cut -d' ' -f1)"
    done <"$NODE_IMAGES_LIST"
  } | sha256sum | cut -c1-16
}

# Unmounts whatever is mounted below $1, deepest first.
unmount_below() {
  local m
  { grep -o " $1[^ ]*" /proc/mounts || true; } | sort -r | while read -r m; do umount -l "$m"; done
}

CONTAINERD_PID=
cleanup() {
  if [ -n "$CONTAINERD_PID" ]; then kill "$CONTAINERD_PID" 2>/dev/null || true; fi
  unmount_below "$WORK"
}

in_root() { chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive "$@"; }

bootstrap_root() {
  log "debootstrap $SUITE (minbase)"
  mkdir -p "$DEB_CACHE"
  debootstrap --variant=minbase --cache-dir="$DEB_CACHE" \
    --keyring=/usr/share/keyrings/debian-archive-keyring.gpg "$SUITE" "$ROOT" "$MIRROR" >"$WORK/debootstrap.log" 2>&1 \
    || { tail -20 "$WORK/debootstrap.log" >&2; die "debootstrap failed (log: $WORK/debootstrap.log)"; }
  cat >"$ROOT/etc/apt/sources.list" <<EOF
deb http://deb.debian.org/debian $SUITE main
deb http://deb.debian.org/debian $SUITE-updates main
deb http://deb.debian.org/debian-security $SUITE-security main
EOF
  mount -t proc proc "$ROOT/proc"
  mount -t sysfs sysfs "$ROOT/sys"
  mount --bind /dev "$ROOT/dev"
  mount -t tmpfs tmpfs "$ROOT/run"
  mount -t tmpfs tmpfs "$ROOT/tmp"
  mount --bind "$DEB_CACHE" "$ROOT/var/cache/apt/archives"
  # No daemon starts in the chroot (invoke-rc.d asks policy-rc.d; systemctl sees the chroot).
  printf '#!/bin/sh\nexit 101\n' >"$ROOT/usr/sbin/policy-rc.d"
  chmod +x "$ROOT/usr/sbin/policy-rc.d"
  # The build's own name resolution; the image gets systemd-resolved's link below.
  cp -L /etc/resolv.conf "$ROOT/etc/resolv.conf"
  log "installing ${#PACKAGES[@]} packages"
  # Downloads happen before any package is configured, so systemd-resolved taking over
  # /etc/resolv.conf cannot break them.
  in_root apt-get update -qq
  in_root apt-get install -y -qq --no-install-recommends "${PACKAGES[@]}" >"$WORK/apt.log" 2>&1 \
    || { tail -20 "$WORK/apt.log" >&2; die "apt-get install failed (log: $WORK/apt.log)"; }
}

configure_root() {
  log "configuring the node"
  install -m 0755 "$K8S_BIN/kubelet" "$K8S_BIN/kubeadm" "$K8S_BIN/kubectl" "$ROOT/usr/bin/"
  cp -rT "$IMAGE_DIR/rootfs" "$ROOT"
  sed -i "s|@PAUSE_IMAGE@|$PAUSE_IMAGE|" "$ROOT/etc/containerd/config.toml"
  # Debian installs the CNI plugins under /usr/lib/cni; kubelet, containerd's config and
  # upstream's manifests expect /opt/cni/bin.
  mkdir -p "$ROOT/opt/cni/bin"
  local plugin
  for plugin in "$ROOT"/usr/lib/cni/*; do
    ln -sfn "/usr/lib/cni/$(basename "$plugin")" "$ROOT/opt/cni/bin/$(basename "$plugin")"
  done
  in_root systemctl enable -q kubelet containerd systemd-networkd systemd-resolved
  # Serial console for `openstack console log show`; the kernel's lines go there too.
  ln -sfn /usr/lib/systemd/system/serial-getty@.service \
    "$ROOT/etc/systemd/system/getty.target.wants/serial-getty@ttyS0.service"

  local kernel initrd
  kernel="$(find "$ROOT/boot" -maxdepth 1 -name 'vmlinuz-*' -printf '%f\n' | sort -V | tail -1)"
  initrd="initrd.img-${kernel#vmlinuz-}"
  [ -f "$ROOT/boot/$initrd" ] || die "no $initrd in the image"
  ROOT_UUID="$(cat /proc/sys/kernel/random/uuid)"
  echo "UUID=$ROOT_UUID / ext4 defaults,errors=remount-ro 0 1" >"$ROOT/etc/fstab"
  mkdir -p "$ROOT/boot/extlinux"
  cat >"$ROOT/boot/extlinux/extlinux.conf" <<EOF
DEFAULT debian
PROMPT 0
TIMEOUT 0
LABEL debian
  LINUX /boot/$kernel
  INITRD /boot/$initrd
  APPEND root=UUID=$ROOT_UUID ro console=tty0 console=ttyS0,115200n8
EOF
}

# Runs the image's own containerd in the chroot on a private socket and imports the node's images
# into its k8s.io namespace, unpacked, so that a first boot pulls and unpacks nothing.
import_images() {
  log "importing the node images"
  local sock=/run/nestplane-build/containerd.sock name archive
  mkdir -p "$ROOT/run/nestplane-build"
  # chroot execs env, which execs containerd: $! is containerd itself.
  chroot "$ROOT" /usr/bin/env -i PATH=/usr/sbin:/usr/bin /usr/bin/containerd --config /etc/containerd/config.toml --address "$sock" \
    --state /run/nestplane-build/state >"$WORK/containerd.log" 2>&1 &
  CONTAINERD_PID=$!
  local i
  for i in $(seq 50); do
    [ -S "$ROOT$sock" ] && break
    [ "$i" -lt 50 ] || die "containerd did not start (log: $WORK/containerd.log)"
    sleep 0.2
  done
  while read -r name archive; do
    in_root ctr --address "$sock" -n k8s.io images import - <"$archive" >/dev/null
    in_root ctr --address "$sock" -n k8s.io images ls -q "name==$name" | grep -qx "$name" \
      || die "$name is not in the image's containerd after import"
  done <"$NODE_IMAGES_LIST"
  kill "$CONTAINERD_PID"
  wait "$CONTAINERD_PID" || true
  CONTAINERD_PID=
}

clean_root() {
  # The .deb cache is this machine's (bind-mounted), so unmounting it leaves the image's empty.
  unmount_below "$ROOT"
  rm -rf "$ROOT"/var/lib/apt/lists/* "$ROOT"/var/cache/apt/*.bin "$ROOT/usr/sbin/policy-rc.d" "$ROOT/opt/containerd"
  # Nothing of this machine or of the build stays: a fresh machine-id and name per server,
  # resolv.conf from systemd-resolved, no logs.
  : >"$ROOT/etc/machine-id"
  rm -f "$ROOT/var/lib/dbus/machine-id" "$ROOT/etc/hostname"
  ln -sfn ../run/systemd/resolve/stub-resolv.conf "$ROOT/etc/resolv.conf"
  find "$ROOT/var/log" -type f -delete
  rm -rf "${ROOT:?}"/tmp/* "$ROOT"/var/tmp/* "$ROOT"/var/cache/debconf/*-old
}

# A raw disk: MBR with syslinux's boot code, one bootable partition holding the root filesystem
# (made from the directory, no loop device needed), extlinux in its boot sector.
assemble_disk() {
  local raw="$WORK/disk.raw" fs_mib
  # Room for the tree, ext4's overhead and a little slack; cloud-init grows it on first boot.
  fs_mib=$(($(du -sm "$ROOT" | cut -f1) * 5 / 4 + 128))
  log "assembling a $((fs_mib + 1)) MiB disk"
  rm -f "$raw"
  truncate -s "$((fs_mib + 1))M" "$raw"
  echo "start=$((PART_OFFSET / 512)), type=83, bootable" | sfdisk -q "$raw"
  dd if=/usr/lib/syslinux/mbr/mbr.bin of="$raw" bs=440 count=1 conv=notrunc status=none
  mkfs.ext4 -q -L "$ROOT_LABEL" -U "$ROOT_UUID" -E "offset=$PART_OFFSET" -d "$ROOT" "$raw" "${fs_mib}M"
  local mnt="$WORK/mnt"
  mkdir -p "$mnt"
  mount -o "loop,offset=$PART_OFFSET" "$raw" "$mnt"
  extlinux --install "$mnt/boot/extlinux" >/dev/null 2>&1
  umount "$mnt"
  qemu-img convert -c -O qcow2 "$raw" "$WORK/nestplane-worker.qcow2"
  rm -f "$raw"
}

main() {
  [ -x "$K8S_BIN/kubelet" ] || die "no kubelet in $K8S_BIN: run \`make binaries\`"
  # The node images' archives and their list (cached; nothing is imported on this machine).
  "$HACK_DIR/images.sh" --archives-only
  local key out
  key="$(cache_key)"
  out="$NESTPLANE_CACHE/worker-image-$key"
  mkdir -p "$(dirname "$OUT_LINK")"
  if [ -f "$out/.complete" ]; then
    ln -sfn "$out/nestplane-worker.qcow2" "$OUT_LINK"
    log "worker image up to date ($out)"
    return 0
  fi
  host_packages
  trap cleanup EXIT
  unmount_below "$WORK"
  rm -rf "$WORK"
  mkdir -p "$WORK"
  bootstrap_root
  configure_root
  import_images
  clean_root
  assemble_disk
  rm -rf "$out"
  mkdir -p "$out"
  mv "$WORK/nestplane-worker.qcow2" "$out/"
  touch "$out/.complete"
  ln -sfn "$out/nestplane-worker.qcow2" "$OUT_LINK"
  # Earlier builds are not needed any more.
  find "$NESTPLANE_CACHE" -maxdepth 1 -name 'worker-image-????????????????' ! -path "$out" -exec rm -rf {} +
  rm -rf "$WORK"
  log "worker image $(du -h "$out/nestplane-worker.qcow2" | cut -f1) at $out"
}

main
