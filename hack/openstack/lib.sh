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

# Loopback ports. Public endpoints in the catalog go through toxiproxy for Nova and Neutron.
OS_HOST=127.0.0.1
PORT_KEYSTONE=5000
PORT_GLANCE=9292
PORT_PLACEMENT=8778
PORT_NOVA=8774
PORT_NEUTRON=9696
PORT_TOXIPROXY=8474
PORT_NOVA_PROXY=18774
PORT_NEUTRON_PROXY=19696
PORT_MARIADB=3306
PORT_RABBIT=5672
PORT_RABBIT_DIST=25672
PORT_EPMD=4369

# The provider network: a veth pair that never leaves the machine. The host keeps
# 172.31.250.1 on one end; Neutron's macvtap agents attach VMs to the other.
OS_VETH_HOST=nsp-os-host
OS_VETH_PHYS=nsp-os-phys
OS_NET_CIDR=172.31.250.0/24
OS_NET_GATEWAY=172.31.250.1
OS_NET_POOL_START=172.31.250.10
OS_NET_POOL_END=172.31.250.250

# Compute hosts and their availability zones.
OS_FAKE_HOST=nestplane-fake
OS_FAKE_AZ=nestplane-fake
OS_LIBVIRT_HOST=nestplane-qemu
OS_LIBVIRT_AZ=nestplane-qemu

OS_PASSWORD=nestplane-admin
OS_DB_PASSWORD=nestplane-db
OS_RABBIT_PASSWORD=nestplane-rabbit
OS_SERVICE_PASSWORD=nestplane-service
OS_TRANSPORT_URL="rabbit://openstack:$OS_RABBIT_PASSWORD@$OS_HOST:$PORT_RABBIT/"

os_db_url() { echo "mysql+pymysql://$1:$OS_DB_PASSWORD@$OS_HOST:$PORT_MARIADB/$1?charset=utf8mb4"; }

# --- background processes -----------------------------------------------------------
# Each daemon runs in its own session (setsid), so killing its process group stops it
# and every child. PID files live in $OS_RUN, logs in $OS_LOGS.

os_pidfile() { echo "$OS_RUN/$1.pid"; }

os_running() {
  local pidfile; pidfile="$(os_pidfile "$1")"
  [ -f "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null
}

# os_start NAME COMMAND...: starts COMMAND in a new session unless NAME already runs.
os_start() {
  local name=$1; shift
  mkdir -p "$OS_RUN" "$OS_LOGS"
  if os_running "$name"; then
    return 0
  fi
  setsid "$@" >>"$OS_LOGS/$name.log" 2>&1 </dev/null &
  echo $! >"$(os_pidfile "$name")"
  log "started $name (pid $!)"
}

# os_stop NAME: TERM the process group, KILL what is left after 20 seconds.
os_stop() {
  local name=$1 pidfile; pidfile="$(os_pidfile "$1")"
  [ -f "$pidfile" ] || return 0
  local pid; pid="$(cat "$pidfile")"
  if kill -0 -- "-$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do
      kill -0 -- "-$pid" 2>/dev/null || break
      sleep 0.5
    done
    kill -KILL -- "-$pid" 2>/dev/null || true
    log "stopped $name (pid $pid)"
  fi
  rm -f "$pidfile"
}

# os_stop_all NAME...: os_stop for several daemons at once (TERM all, then wait, then KILL).
os_stop_all() {
  local name pid pids=() names=()
  for name in "$@"; do
    [ -f "$(os_pidfile "$name")" ] || continue
    pid="$(cat "$(os_pidfile "$name")")"
    if kill -TERM -- "-$pid" 2>/dev/null; then
      pids+=("$pid")
      names+=("$name")
    fi
    rm -f "$(os_pidfile "$name")"
  done
  [ ${#pids[@]} -gt 0 ] || return 0
  local deadline=$((SECONDS + 20)) alive
  while :; do
    alive=0
    for pid in "${pids[@]}"; do
      kill -0 -- "-$pid" 2>/dev/null && alive=1
    done
    [ $alive -eq 1 ] && [ $SECONDS -lt $deadline ] || break
    sleep 0.5
  done
  for pid in "${pids[@]}"; do
    kill -KILL -- "-$pid" 2>/dev/null || true
  done
  log "stopped ${names[*]}"
}

# os_wait DESCRIPTION TIMEOUT_SECONDS COMMAND...: polls COMMAND every second.
os_wait() {
  local what=$1 timeout=$2; shift 2
  local deadline=$((SECONDS + timeout))
  until "$@" >/dev/null 2>&1; do
    [ $SECONDS -lt $deadline ] || die "timed out after ${timeout}s waiting for $what (logs: $OS_LOGS)"
    sleep 1
  done
}

os_http_up() { curl -fsS -o /dev/null --max-time 2 "$1"; }
