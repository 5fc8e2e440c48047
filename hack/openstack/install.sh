#!/usr/bin/env bash
# Installs what the test cloud needs; idempotent, and a second run installs nothing.
#   - Debian packages: MariaDB, RabbitMQ, libvirt + QEMU (TCG), genisoimage, build deps of libvirt-python;
#   - a virtualenv with the pinned OpenStack release, cached under $NESTPLANE_CACHE;
#   - toxiproxy and the registry mirror (CNCF distribution), built from their Go modules by
#     hack/build-binaries.sh.
# Package maintainer scripts must not start daemons: hack/openstack/up.sh starts its own.
. "$(dirname "$0")/lib.sh"

packages=(
  mariadb-server rabbitmq-server
  libvirt-daemon libvirt-daemon-driver-qemu libvirt-clients qemu-system-x86 qemu-utils genisoimage
  python3 python3-venv python3-dev libvirt-dev pkg-config gcc
  iproute2 nftables curl ca-certificates procps openssl
)

install_debian_packages() {
  local missing=() p
  for p in "${packages[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -gt 0 ] || return 0
  log "installing Debian packages: ${missing[*]}"
  # policy-rc.d 101 keeps invoke-rc.d from starting MariaDB, RabbitMQ or libvirtd behind our back.
  local had_policy=0
  [ -e /usr/sbin/policy-rc.d ] && had_policy=1
  if [ $had_policy -eq 0 ]; then
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
    chmod +x /usr/sbin/policy-rc.d
  fi
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    apt-get update -qq
  fi
  # Another script may hold the dpkg lock (hack/install-packages.sh): wait for it.
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 \
    "${missing[@]}" >/dev/null
  [ $had_policy -eq 1 ] || rm -f /usr/sbin/policy-rc.d
}

# libvirt resolves its compiled-in QEMU user and group before it reads qemu.conf, so they must
# exist even though qemu.conf runs QEMU as root. libvirt-daemon-system would create them.
ensure_libvirt_users() {
  getent group kvm >/dev/null || groupadd --system kvm
  getent group libvirt-qemu >/dev/null || groupadd --system libvirt-qemu
  getent passwd libvirt-qemu >/dev/null ||
    useradd --system --no-create-home --home-dir /var/lib/libvirt --shell /usr/sbin/nologin \
      --gid libvirt-qemu --groups kvm libvirt-qemu
}

install_venv() {
  [ -f "$OS_VENV/.complete" ] && return 0
  log "installing OpenStack $OPENSTACK_RELEASE into $OS_VENV (cold: a few minutes)"
  rm -rf "$OS_VENV"
  # Debian's own Python, so the virtualenv does not depend on a developer's pyenv or conda.
  /usr/bin/python3 -m venv "$OS_VENV"
  "$OS_BIN/pip" install -q --upgrade pip setuptools wheel
  local constraints=()
  [ -s "$OS_CONSTRAINTS" ] && constraints=(-c "$OS_CONSTRAINTS")
  "$OS_BIN/pip" install -q "${constraints[@]}" -r "$OS_DIR/requirements.txt"
  touch "$OS_VENV/.complete"
}

install_debian_packages
ensure_libvirt_users
install_venv
"$HACK_DIR/build-binaries.sh" toxiproxy registry
