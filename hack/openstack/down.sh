#!/usr/bin/env bash
# Stops every process `make openstack-up` started, by the PIDs it recorded, in reverse order.
# Servers' QEMU processes belong to libvirtd: they are destroyed through libvirt first.
# State stays in $NESTPLANE_STATE/openstack, so the next `make openstack-up` is warm;
# WIPE=1 also deletes it (databases, images, instances, credentials), the registry's images and
# CA, and the veth pair.
. "$(dirname "$0")/lib.sh"

if daemon_running libvirtd; then
  for dom in $(virsh -c qemu:///system list --name 2>/dev/null | grep '^instance-' || true); do
    virsh -c qemu:///system destroy "$dom" >/dev/null 2>&1 || true
  done
  # libvirt keeps domain definitions in /etc/libvirt/qemu; a wiped Nova must not find them again.
  if [ "${WIPE:-0}" = 1 ]; then
    for dom in $(virsh -c qemu:///system list --all --name 2>/dev/null | grep '^instance-' || true); do
      virsh -c qemu:///system undefine --nvram "$dom" >/dev/null 2>&1 ||
        virsh -c qemu:///system undefine "$dom" >/dev/null 2>&1 || true
    done
  fi
fi
# OpenStack services first, all at once; then what they depend on.
daemon_stop "neutron-macvtap-$OS_LIBVIRT_HOST" "neutron-macvtap-$OS_FAKE_HOST" nova-compute-qemu nova-compute-fake \
  nova-scheduler nova-conductor nova-api neutron-rpc neutron-api placement glance keystone
daemon_stop libvirtd toxiproxy registry rabbitmq
daemon_stop epmd mariadb
# Anything left with a PID file is something an older version of these scripts started.
for pidfile in "$OS_RUN"/*.pid; do
  [ -e "$pidfile" ] || continue
  daemon_stop "$(basename "$pidfile" .pid)"
done
if [ "${WIPE:-0}" = 1 ]; then
  log "wiping $OS_STATE"
  ip link del "$OS_VETH_HOST" 2>/dev/null || true
  nft delete table inet nestplane_openstack 2>/dev/null || true
  rm -rf "$OS_STATE" "$OS_REGISTRY_STATE"
fi
