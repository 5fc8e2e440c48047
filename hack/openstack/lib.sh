# shellcheck shell=bash
# Settings here are read by the scripts that source this file.
# shellcheck disable=SC2034
# Shared settings for hack/openstack/*.sh. Source it; do not run it.
# shellcheck source=../lib/common.sh
. "$(dirname "${BASH_SOURCE[0]}")/../lib/common.sh"

OS_DIR="$HACK_DIR/openstack"
# The virtualenv is cached per release and per hash of the frozen dependency set.
OS_CONSTRAINTS="$OS_DIR/constraints.txt"
OS_VENV="$NESTPLANE_CACHE/openstack-$OPENSTACK_RELEASE-$({ cat "$OS_DIR/requirements.txt" "$OS_CONSTRAINTS" 2>/dev/null || true; } | sha256sum | cut -c1-10)/venv"
OS_BIN="$OS_VENV/bin"
OS_IMAGES="$NESTPLANE_CACHE/openstack-images"
TOXIPROXY_BIN="$NESTPLANE_CACHE/toxiproxy-$TOXIPROXY_VERSION/bin"
REGISTRY_BIN="$NESTPLANE_CACHE/registry-$DISTRIBUTION_VERSION/bin"

# Everything the cloud writes: configs, databases, logs, PID files, instances.
OS_STATE="$NESTPLANE_STATE/openstack"
OS_ETC="$OS_STATE/etc"
OS_RUN="$OS_STATE/run"
OS_LOGS="$OS_STATE/logs"
OS_LIB="$OS_STATE/lib"
# Files for the tests and the operator.
OS_CLOUDS_YAML="$OS_STATE/clouds.yaml"
OS_ADMIN_CLOUDS_YAML="$OS_STATE/clouds-admin.yaml"
OS_SECRET_YAML="$OS_STATE/clouds-secret.yaml"
# The registry mirror's storage and its CA: outside OS_STATE, kept across openstack-down
# (WIPE=1 deletes it too). Workers trust ca.crt (a NodePool's registryMirrors[].caBundle).
OS_REGISTRY_STATE="$NESTPLANE_STATE/registry"
OS_REGISTRY_CA="$OS_REGISTRY_STATE/ca.crt"
# hosts.toml for clients on this machine (ctr --hosts-dir): the registry itself, trusting ca.crt.
OS_REGISTRY_HOSTS_DIR="$OS_REGISTRY_STATE/certs.d"

# Services talk to each other, their databases and RabbitMQ on loopback (internal and admin
# endpoints). Public endpoints in the catalog go through toxiproxy for Nova and Neutron.
OS_HOST=127.0.0.1
# The address of the catalog's public endpoints and of clouds.yaml's auth_url: what clients use,
# the tests on this host and the operator in a pod of the management cluster alike. Loopback would
# be the pod itself; the host's end of the provider network's veth (hack/network.env) is a local
# address of this machine that pods reach through their node. up.sh keeps anything else away.
OS_PUBLIC_HOST="${OS_PUBLIC_HOST:-$OS_NET_GATEWAY}"
PORT_KEYSTONE=5000
PORT_GLANCE=9292
PORT_PLACEMENT=8778
PORT_NOVA=8774
PORT_NEUTRON=9696
PORT_CINDER=8776
PORT_TOXIPROXY=8474
PORT_NOVA_PROXY=18774
PORT_NEUTRON_PROXY=19696
PORT_MARIADB=3306
PORT_RABBIT=5672
PORT_RABBIT_DIST=25672
PORT_EPMD=4369
# The registry mirror (registry.sh) listens on the gateway address only.
PORT_REGISTRY=5443
OS_REGISTRY_ADDRESS="$OS_NET_GATEWAY:$PORT_REGISTRY"

# The provider network (its addresses, OS_NET_*, are in hack/network.env): a veth pair that never
# leaves the machine. The host keeps the gateway on one end; Neutron's macvtap agents attach VMs to
# the other.
OS_VETH_HOST=nsp-os-host
OS_VETH_PHYS=nsp-os-phys

# Compute hosts and their availability zones.
OS_FAKE_HOST=nestplane-fake
OS_FAKE_AZ=nestplane-fake
OS_LIBVIRT_HOST=nestplane-qemu
OS_LIBVIRT_AZ=nestplane-qemu
# The one cinder-volume service (its backend is py/cinder_file_driver.py).
OS_CINDER_HOST=nestplane-cinder

OS_PASSWORD=nestplane-admin
OS_DB_PASSWORD=nestplane-db
OS_RABBIT_PASSWORD=nestplane-rabbit
OS_SERVICE_PASSWORD=nestplane-service
OS_TRANSPORT_URL="rabbit://openstack:$OS_RABBIT_PASSWORD@$OS_HOST:$PORT_RABBIT/"

os_db_url() { echo "mysql+pymysql://$1:$OS_DB_PASSWORD@$OS_HOST:$PORT_MARIADB/$1?charset=utf8mb4"; }

# --- background processes -----------------------------------------------------------
# hack/lib/daemon.sh, with the cloud's own PID and log directories. The cloud's daemons are not
# restarted when they exit: a crash shows in `make openstack-status` and the logs.
DAEMON_RUN_DIR="$OS_RUN"
DAEMON_LOG_DIR="$OS_LOGS"
DAEMON_SUPERVISE=0
DAEMON_STOP_TIMEOUT=20
WAIT_INTERVAL=1
WAIT_HINT="logs: $OS_LOGS"
# shellcheck source=../lib/daemon.sh
. "$HACK_DIR/lib/daemon.sh"

os_http_up() { curl -fsS -o /dev/null --max-time 2 "$1"; }

# os_daemon_start NAME INPUT... -- COMMAND...: daemon_start, after stopping NAME if it runs with
# inputs other than these: its command line and the files INPUT (files or directories) held when
# it started. So `make openstack-up` on a running cloud restarts exactly what a change touches.
# A daemon started without a record (by an older version of these scripts) is restarted too.
os_daemon_start() {
  local name=$1 inputs=() stamp fingerprint
  shift
  while [ "$1" != -- ]; do
    inputs+=("$1")
    shift
  done
  shift
  stamp="$OS_RUN/$name.inputs"
  fingerprint="$({
    printf '%s\n' "$@"
    if [ ${#inputs[@]} -gt 0 ]; then find "${inputs[@]}" -type f -print0 | sort -z | xargs -0 -r sha256sum; fi
  } | sha256sum | cut -d' ' -f1)"
  if daemon_running "$name" && [ "$(cat "$stamp" 2>/dev/null)" != "$fingerprint" ]; then
    log "$name: its command line or configuration changed; restarting it"
    daemon_stop "$name"
  fi
  daemon_start "$name" "$@"
  echo "$fingerprint" >"$stamp"
}
