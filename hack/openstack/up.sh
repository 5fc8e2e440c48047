#!/usr/bin/env bash
# Starts the test cloud: MariaDB, RabbitMQ, Keystone, Glance, Placement, Nova (two compute hosts),
# Neutron (ML2/macvtap), Cinder and toxiproxy, on loopback, with the public endpoints also on
# $OS_PUBLIC_HOST, and the registry mirror on the gateway (registry.sh); then creates what tests
# need (bootstrap.py).
# Idempotent: configuration is rendered anew and a daemon is restarted only when its command line
# or configuration changed (os_daemon_start); databases are synced once per release.
# Ends by writing $OS_CLOUDS_YAML (nestplane's application credential) and $OS_SECRET_YAML.
. "$(dirname "$0")/lib.sh"
. "$OS_DIR/configs.sh"
. "$OS_DIR/registry.sh"

start_time=$SECONDS
"$OS_DIR/install.sh"
mkdir -p "$OS_ETC" "$OS_RUN" "$OS_LOGS" "$OS_LIB"
# A stable path to the current virtualenv, for the `openstack` CLI in scripts and tests.
ln -sfn "$OS_VENV" "$OS_STATE/venv"
write_all_configs
export PATH="$OS_STATE/bin:$OS_BIN:$PATH"
# Privileged helpers (privsep, rootwrap) run as `sudo CMD`; as root that is just CMD. The shim is on
# the PATH of the cloud's own processes only.
mkdir -p "$OS_STATE/bin"
printf '#!/bin/sh\nexec "$@"\n' >"$OS_STATE/bin/sudo"
chmod +x "$OS_STATE/bin/sudo"

# A veth pair that stays on this machine: the host's end carries the provider network's gateway
# address, the other end is physnet1, where Neutron's macvtap agents attach guests. It comes first:
# the public endpoints listen on the gateway address (OS_PUBLIC_HOST).
setup_network() {
  if ! ip link show "$OS_VETH_HOST" >/dev/null 2>&1; then
    ip link add "$OS_VETH_HOST" type veth peer name "$OS_VETH_PHYS"
  fi
  ip addr replace "$OS_NET_GATEWAY/${OS_NET_CIDR#*/}" dev "$OS_VETH_HOST"
  ip link set "$OS_VETH_HOST" up
  ip link set "$OS_VETH_PHYS" up
  [ -n "$(ip -o addr show to "$OS_PUBLIC_HOST")" ] ||
    die "OS_PUBLIC_HOST=$OS_PUBLIC_HOST is not an address of this machine: nothing could listen on it"
  # This machine forwards packets (the management cluster needs it) and has a default route, so
  # guests could reach beyond it through their gateway. Our own nftables table keeps them on the
  # machine: they may talk to the host itself and to the management cluster's pods and Services.
  # The gateway address carries the cloud's public endpoints: only the host, guests and pods reach
  # it, not a neighbour that routes it through this machine.
  nft -f - <<NFT
table inet nestplane_openstack
delete table inet nestplane_openstack
table inet nestplane_openstack {
  chain forward {
    type filter hook forward priority filter - 10; policy accept;
    iifname "$OS_VETH_HOST" ip daddr != { $POD_CIDR, $SERVICE_CIDR } drop
    oifname "$OS_VETH_HOST" ip saddr != { $POD_CIDR, $SERVICE_CIDR } drop
    iifname "$OS_VETH_HOST" meta nfproto ipv6 drop
    oifname "$OS_VETH_HOST" meta nfproto ipv6 drop
  }
  chain input {
    type filter hook input priority filter - 10; policy accept;
    ip daddr $OS_NET_GATEWAY ip saddr != { 127.0.0.0/8, $OS_NET_CIDR, $POD_CIDR } drop
  }
}
NFT
}

start_mariadb() {
  if [ ! -d "$OS_LIB/mysql/mysql" ]; then
    log "initializing MariaDB in $OS_LIB/mysql"
    mkdir -p "$OS_LIB/mysql"
    mariadb-install-db --defaults-file="$OS_ETC/mariadb/my.cnf" --auth-root-authentication-method=socket \
      --skip-test-db >"$OS_LOGS/mariadb-install.log" 2>&1
  fi
  os_daemon_start mariadb "$OS_ETC/mariadb" -- mariadbd --defaults-file="$OS_ETC/mariadb/my.cnf"
  wait_for "MariaDB" 60 mariadb --socket="$OS_RUN/mysqld.sock" -e 'SELECT 1'
  local db sql=""
  for db in keystone glance placement nova_api nova nova_cell0 neutron cinder; do
    sql+="CREATE DATABASE IF NOT EXISTS $db CHARACTER SET utf8mb4;"
  done
  for db in keystone glance placement nova_api nova neutron cinder; do
    sql+="CREATE USER IF NOT EXISTS '$db'@'127.0.0.1' IDENTIFIED BY '$OS_DB_PASSWORD';"
  done
  sql+="GRANT ALL ON keystone.* TO 'keystone'@'127.0.0.1'; GRANT ALL ON glance.* TO 'glance'@'127.0.0.1';"
  sql+="GRANT ALL ON placement.* TO 'placement'@'127.0.0.1'; GRANT ALL ON neutron.* TO 'neutron'@'127.0.0.1';"
  sql+="GRANT ALL ON cinder.* TO 'cinder'@'127.0.0.1';"
  sql+="GRANT ALL ON nova_api.* TO 'nova_api'@'127.0.0.1'; GRANT ALL ON nova.* TO 'nova'@'127.0.0.1';"
  sql+="GRANT ALL ON nova_cell0.* TO 'nova'@'127.0.0.1'; GRANT ALL ON nova_api.* TO 'nova'@'127.0.0.1';"
  mariadb --socket="$OS_RUN/mysqld.sock" -e "$sql"
}

start_rabbitmq() {
  os_daemon_start epmd -- epmd -address "$OS_HOST" -port "$PORT_EPMD"
  wait_for "epmd" 20 epmd -names
  mkdir -p "$OS_LIB/rabbitmq" "$OS_LOGS/rabbitmq"
  # Runs as root with its data under our state; Erlang distribution on loopback only.
  os_daemon_start rabbitmq "$OS_ETC/rabbitmq" -- env HOME="$OS_LIB/rabbitmq" \
    RABBITMQ_NODENAME=rabbit@localhost \
    RABBITMQ_CONFIG_FILE="$OS_ETC/rabbitmq/rabbitmq.conf" \
    RABBITMQ_MNESIA_BASE="$OS_LIB/rabbitmq/mnesia" \
    RABBITMQ_LOG_BASE="$OS_LOGS/rabbitmq" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$OS_ETC/rabbitmq/enabled_plugins" \
    RABBITMQ_DIST_PORT="$PORT_RABBIT_DIST" \
    ERL_EPMD_ADDRESS="$OS_HOST" \
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
    /usr/lib/rabbitmq/bin/rabbitmq-server
}

rabbitmqctl_() { HOME="$OS_LIB/rabbitmq" ERL_EPMD_ADDRESS="$OS_HOST" /usr/lib/rabbitmq/bin/rabbitmqctl -n rabbit@localhost "$@"; }

configure_rabbitmq() {
  wait_for "RabbitMQ" 120 rabbitmqctl_ await_startup
  if ! rabbitmqctl_ list_users 2>/dev/null | grep -q '^openstack\b'; then
    rabbitmqctl_ add_user openstack "$OS_RABBIT_PASSWORD" >/dev/null
  fi
  rabbitmqctl_ set_permissions -p / openstack '.*' '.*' '.*' >/dev/null
}

# db_sync NAME COMMAND...: runs a schema migration once per installed release.
db_sync() {
  local name=$1 marker="$OS_LIB/db-synced/$1-$OPENSTACK_RELEASE"; shift
  [ -f "$marker" ] && return 0
  log "migrating the $name database"
  "$@" >>"$OS_LOGS/db-sync-$name.log" 2>&1 || die "$name database migration failed: see $OS_LOGS/db-sync-$name.log"
  mkdir -p "$OS_LIB/db-synced"
  touch "$marker"
}

# gunicorn_start NAME ADDRESSES PORT MODULE CONFIG_DIR [ENV=VALUE...]: one WSGI API on PORT of each of
# ADDRESSES (space-separated), restarted when CONFIG_DIR changes. An API in the catalog's public
# interface listens on OS_PUBLIC_HOST beside loopback: a second --bind of the same gunicorn costs
# nothing, where a proxy would add a process and a hop for no fault injection.
gunicorn_start() {
  local name=$1 addresses=$2 port=$3 module=$4 config_dir=$5 address binds=()
  shift 5
  for address in $addresses; do
    binds+=(--bind "$address:$port")
  done
  os_daemon_start "$name" "$config_dir" "$OS_DIR/py/wsgi.py" -- env "$@" "$OS_BIN/gunicorn" --pythonpath "$OS_DIR/py" \
    "${binds[@]}" --workers 1 --threads 8 --timeout 300 --graceful-timeout 5 --keep-alive 300 --access-logfile - \
    --name "$name" "wsgi:load('$module')"
}

start_keystone() {
  local conf="$OS_ETC/keystone/keystone.conf"
  db_sync keystone keystone-manage --config-file "$conf" db_sync
  if [ ! -d "$OS_LIB/keystone/fernet-keys" ]; then
    mkdir -p "$OS_LIB/keystone"
    keystone-manage --config-file "$conf" fernet_setup --keystone-user root --keystone-group root
    keystone-manage --config-file "$conf" credential_setup --keystone-user root --keystone-group root
  fi
  local marker="$OS_LIB/db-synced/keystone-bootstrap"
  if [ ! -f "$marker" ]; then
    keystone-manage --config-file "$conf" bootstrap --bootstrap-password "$OS_PASSWORD" \
      --bootstrap-admin-url "http://$OS_HOST:$PORT_KEYSTONE/v3" \
      --bootstrap-internal-url "http://$OS_HOST:$PORT_KEYSTONE/v3" \
      --bootstrap-public-url "http://$OS_PUBLIC_HOST:$PORT_KEYSTONE/v3" \
      --bootstrap-region-id RegionOne >>"$OS_LOGS/keystone-bootstrap.log" 2>&1
    touch "$marker"
  fi
  gunicorn_start keystone "$OS_HOST $OS_PUBLIC_HOST" "$PORT_KEYSTONE" keystone.wsgi.api "$OS_ETC/keystone" \
    OS_KEYSTONE_CONFIG_DIR="$OS_ETC/keystone" OS_KEYSTONE_CONFIG_FILES=keystone.conf
}

start_glance() {
  db_sync glance glance-manage --config-file "$OS_ETC/glance/glance-api.conf" db_sync
  gunicorn_start glance "$OS_HOST $OS_PUBLIC_HOST" "$PORT_GLANCE" glance.wsgi.api "$OS_ETC/glance" OS_GLANCE_CONFIG_DIR="$OS_ETC/glance"
}

start_placement() {
  db_sync placement placement-manage --config-file "$OS_ETC/placement/placement.conf" db sync
  gunicorn_start placement "$OS_HOST $OS_PUBLIC_HOST" "$PORT_PLACEMENT" placement.wsgi.api "$OS_ETC/placement" OS_PLACEMENT_CONFIG_DIR="$OS_ETC/placement"
}

start_nova_control() {
  local conf="$OS_ETC/nova/nova.conf"
  db_sync nova-api nova-manage --config-file "$conf" api_db sync
  db_sync nova-cells sh -c "nova-manage --config-file '$conf' cell_v2 map_cell0 &&
    (nova-manage --config-file '$conf' cell_v2 list_cells | grep -q ' cell1 ' ||
     nova-manage --config-file '$conf' cell_v2 create_cell --name cell1)"
  db_sync nova nova-manage --config-file "$conf" db sync
  # Public Nova and Neutron are toxiproxy's proxies: their APIs stay on loopback.
  gunicorn_start nova-api "$OS_HOST" "$PORT_NOVA" nova.wsgi.osapi_compute "$OS_ETC/nova" \
    OS_NOVA_CONFIG_DIR="$OS_ETC/nova" OS_NOVA_CONFIG_FILES="api-paste.ini;nova.conf"
  os_daemon_start nova-conductor "$conf" -- nova-conductor --config-file "$conf" --log-file "$OS_LOGS/nova-conductor.log"
  os_daemon_start nova-scheduler "$conf" -- nova-scheduler --config-file "$conf" --log-file "$OS_LOGS/nova-scheduler.log"
}

start_neutron() {
  local neutron_conf=(--config-file "$OS_ETC/neutron/neutron.conf" --config-file "$OS_ETC/neutron/plugins/ml2/ml2_conf.ini")
  db_sync neutron neutron-db-manage "${neutron_conf[@]}" upgrade head
  gunicorn_start neutron-api "$OS_HOST" "$PORT_NEUTRON" neutron.wsgi.api "$OS_ETC/neutron" \
    OS_NEUTRON_CONFIG_DIR="$OS_ETC/neutron" OS_NEUTRON_CONFIG_FILES="neutron.conf;plugins/ml2/ml2_conf.ini"
  os_daemon_start neutron-rpc "$OS_ETC/neutron" -- neutron-rpc-server "${neutron_conf[@]}" --log-file "$OS_LOGS/neutron-rpc.log"
}

# Cinder: the API, its scheduler and one volume service whose backend stores each volume as a file.
start_cinder() {
  local conf="$OS_ETC/cinder/cinder.conf"
  db_sync cinder cinder-manage --config-file "$conf" db sync
  gunicorn_start cinder-api "$OS_HOST $OS_PUBLIC_HOST" "$PORT_CINDER" cinder.wsgi.api "$OS_ETC/cinder" \
    NSP_WSGI_ARGS="--config-file $conf"
  os_daemon_start cinder-scheduler "$conf" -- cinder-scheduler --config-file "$conf" --log-file "$OS_LOGS/cinder-scheduler.log"
  os_daemon_start cinder-volume "$conf" "$OS_DIR/py/cinder_file_driver.py" -- env PYTHONPATH="$OS_DIR/py" \
    cinder-volume --config-file "$conf" --log-file "$OS_LOGS/cinder-volume.log"
}

start_libvirt() {
  mkdir -p /var/lib/libvirt/qemu /var/log/libvirt/qemu /var/cache/libvirt /run/libvirt
  os_daemon_start libvirtd "$OS_ETC/libvirt" /etc/libvirt/qemu.conf -- libvirtd --config "$OS_ETC/libvirt/libvirtd.conf"
  wait_for "libvirtd" 60 virsh -c qemu:///system version
}

start_computes() {
  local conf="$OS_ETC/nova/nova.conf" host
  # The fake driver never writes the node identity file that Nova insists on finding from its
  # second start on, and names its node with a random UUID (py/nova_compute_fake.py fixes that).
  local identity="$OS_LIB/nova/compute-fake/compute_id"
  [ -s "$identity" ] || cat /proc/sys/kernel/random/uuid >"$identity"
  os_daemon_start nova-compute-fake "$conf" "$OS_ETC/nova/nova-compute-fake.conf" "$OS_DIR/py/nova_compute_fake.py" -- "$OS_BIN/python3" "$OS_DIR/py/nova_compute_fake.py" --config-file "$conf" --config-file "$OS_ETC/nova/nova-compute-fake.conf"
  os_daemon_start nova-compute-qemu "$conf" "$OS_ETC/nova/nova-compute-qemu.conf" -- nova-compute --config-file "$conf" --config-file "$OS_ETC/nova/nova-compute-qemu.conf"
  # One macvtap agent per compute host name: ML2 binds a port only for a host with a live agent.
  for host in "$OS_FAKE_HOST" "$OS_LIBVIRT_HOST"; do
    os_daemon_start "neutron-macvtap-$host" "$OS_ETC/neutron" "$OS_DIR/py/macvtap_agent.py" -- "$OS_BIN/python3" "$OS_DIR/py/macvtap_agent.py" \
      --config-file "$OS_ETC/neutron/neutron.conf" --config-file "$OS_ETC/neutron/plugins/ml2/ml2_conf.ini" \
      --config-file "$OS_ETC/neutron/macvtap-$host.ini" --log-file "$OS_LOGS/neutron-macvtap-$host.log"
  done
}

start_toxiproxy() {
  [ -x "$TOXIPROXY_BIN/server" ] || die "toxiproxy is not built: hack/build-binaries.sh toxiproxy"
  os_daemon_start toxiproxy "$OS_ETC/toxiproxy" -- "$TOXIPROXY_BIN/server" -host "$OS_HOST" -port "$PORT_TOXIPROXY" \
    -config "$OS_ETC/toxiproxy/proxies.json"
}

# bootstrap PHASE: py/bootstrap.py with the settings of lib.sh. Names carry an NSP_ prefix because
# openstacksdk reads OS_* variables as credentials.
bootstrap() {
  local v args=()
  for v in OS_HOST OS_PUBLIC_HOST PORT_KEYSTONE PORT_GLANCE PORT_PLACEMENT PORT_NOVA PORT_NEUTRON PORT_CINDER PORT_NOVA_PROXY \
    PORT_NEUTRON_PROXY OS_STATE OS_ETC OS_LOGS OS_IMAGES OS_PASSWORD OS_SERVICE_PASSWORD OS_CLOUDS_YAML \
    OS_ADMIN_CLOUDS_YAML OS_SECRET_YAML OS_FAKE_HOST OS_LIBVIRT_HOST OS_FAKE_AZ OS_LIBVIRT_AZ OS_NET_CIDR \
    OS_NET_GATEWAY OS_NET_POOL_START OS_NET_POOL_END OS_CINDER_HOST; do
    args+=("NSP_$v=${!v}")
  done
  env "${args[@]}" "$OS_BIN/python3" "$OS_DIR/py/bootstrap.py" "$1"
}

setup_network
start_mariadb
start_rabbitmq
start_toxiproxy
start_registry
start_keystone
start_libvirt
wait_for "Keystone" 120 os_http_up "http://$OS_HOST:$PORT_KEYSTONE/v3"
wait_for "Keystone on $OS_PUBLIC_HOST" 30 os_http_up "http://$OS_PUBLIC_HOST:$PORT_KEYSTONE/v3"
# Services, endpoints, users and roles first: every other service authenticates against them.
bootstrap identity
configure_rabbitmq
start_glance
start_placement
start_neutron
start_nova_control
start_cinder
wait_for "Placement" 120 os_http_up "http://$OS_HOST:$PORT_PLACEMENT/"
wait_for "Neutron API" 180 os_http_up "http://$OS_HOST:$PORT_NEUTRON/"
start_computes
wait_for "Nova API" 180 os_http_up "http://$OS_HOST:$PORT_NOVA/"
wait_for "Glance" 120 os_http_up "http://$OS_HOST:$PORT_GLANCE/versions"
wait_for "Cinder API" 120 os_http_up "http://$OS_HOST:$PORT_CINDER/"
# Compute hosts, agents, cells, zones, flavors, network, images, quotas, nestplane's credential.
bootstrap resources
log "OpenStack is up in $((SECONDS - start_time))s; clouds.yaml: $OS_CLOUDS_YAML (cloud 'nestplane'), admin: $OS_ADMIN_CLOUDS_YAML"
