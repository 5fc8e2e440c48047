# shellcheck shell=bash
# Writes every configuration file of the test cloud under $OS_ETC. Sourced by up.sh after lib.sh.
# The files are rewritten on each `make openstack-up`, so a change here takes effect on the next start.

# authtoken SERVICE: the keystonemiddleware section that validates tokens for SERVICE.
authtoken() {
  cat <<EOF
[keystone_authtoken]
www_authenticate_uri = http://$OS_HOST:$PORT_KEYSTONE/v3
auth_url = http://$OS_HOST:$PORT_KEYSTONE/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $1
password = $OS_SERVICE_PASSWORD
service_token_roles_required = true
EOF
}

# service_auth SECTION USER: a keystoneauth section for service-to-service calls on internal endpoints.
service_auth() {
  cat <<EOF
[$1]
auth_url = http://$OS_HOST:$PORT_KEYSTONE/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = $2
password = $OS_SERVICE_PASSWORD
region_name = RegionOne
valid_interfaces = internal
EOF
}

write_mariadb_config() {
  mkdir -p "$OS_ETC/mariadb"
  cat >"$OS_ETC/mariadb/my.cnf" <<EOF
[mysqld]
user = root
datadir = $OS_LIB/mysql
socket = $OS_RUN/mysqld.sock
pid-file = $OS_RUN/mysqld.pidfile
bind-address = $OS_HOST
port = $PORT_MARIADB
skip-name-resolve
max_connections = 1000
innodb_buffer_pool_size = 64M
innodb_log_file_size = 32M
innodb_flush_log_at_trx_commit = 2
performance_schema = off
character-set-server = utf8mb4
collation-server = utf8mb4_general_ci
log-error = $OS_LOGS/mariadb-server.log
EOF
}

write_rabbitmq_config() {
  mkdir -p "$OS_ETC/rabbitmq"
  cat >"$OS_ETC/rabbitmq/rabbitmq.conf" <<EOF
listeners.tcp.1 = $OS_HOST:$PORT_RABBIT
loopback_users = none
vm_memory_high_watermark.absolute = 512MiB
disk_free_limit.absolute = 200MiB
log.file.level = warning
EOF
}

write_keystone_config() {
  mkdir -p "$OS_ETC/keystone"
  cat >"$OS_ETC/keystone/keystone.conf" <<EOF
[DEFAULT]
log_file = $OS_LOGS/keystone.log
[database]
connection = $(os_db_url keystone)
[token]
provider = fernet
expiration = 86400
[fernet_tokens]
key_repository = $OS_LIB/keystone/fernet-keys
[fernet_receipts]
key_repository = $OS_LIB/keystone/fernet-keys
[credential]
key_repository = $OS_LIB/keystone/credential-keys
EOF
}

write_glance_config() {
  mkdir -p "$OS_ETC/glance" "$OS_LIB/glance/images" "$OS_LIB/glance/staging" "$OS_LIB/glance/tasks"
  cp "$OS_VENV/etc/glance/glance-api-paste.ini" "$OS_ETC/glance/"
  cat >"$OS_ETC/glance/glance-api.conf" <<EOF
[DEFAULT]
log_file = $OS_LOGS/glance.log
enabled_backends = local:file
[database]
connection = $(os_db_url glance)
$(authtoken glance)
[paste_deploy]
flavor = keystone
[glance_store]
default_backend = local
[local]
filesystem_store_datadir = $OS_LIB/glance/images
[os_glance_staging_store]
filesystem_store_datadir = $OS_LIB/glance/staging
[os_glance_tasks_store]
filesystem_store_datadir = $OS_LIB/glance/tasks
[oslo_concurrency]
lock_path = $OS_LIB/glance/locks
EOF
}

write_placement_config() {
  mkdir -p "$OS_ETC/placement"
  cat >"$OS_ETC/placement/placement.conf" <<EOF
[DEFAULT]
log_file = $OS_LOGS/placement.log
[placement_database]
connection = $(os_db_url placement)
[api]
auth_strategy = keystone
$(authtoken placement)
EOF
}

# Nova: one nova.conf for the API and the cell services, and one per compute host on top of it.
write_nova_config() {
  mkdir -p "$OS_ETC/nova" "$OS_LIB/nova/compute-fake/instances" "$OS_LIB/nova/compute-qemu/instances"
  cp "$OS_VENV/etc/nova/api-paste.ini" "$OS_ETC/nova/"
  cat >"$OS_ETC/nova/nova.conf" <<EOF
[DEFAULT]
transport_url = $OS_TRANSPORT_URL
state_path = $OS_LIB/nova
my_ip = $OS_HOST
# Servers that name no zone land on the fake host: fast and free.
default_schedule_zone = $OS_FAKE_AZ
# User-data reaches guests on a config drive: there is no metadata service.
force_config_drive = true
mkisofs_cmd = genisoimage
instance_usage_audit = false
heal_instance_info_cache_interval = -1
[api]
auth_strategy = keystone
[workarounds]
# Privileged helpers run as plain "sudo privsep-helper" (the shim in $OS_STATE/bin), not through
# rootwrap, whose filters only accept configuration files under /etc.
disable_rootwrap = true
[wsgi]
api_paste_config = $OS_ETC/nova/api-paste.ini
[api_database]
connection = $(os_db_url nova_api)
[database]
connection = $(os_db_url nova)
[oslo_policy]
policy_file = $OS_ETC/nova/policy.yaml
[oslo_concurrency]
lock_path = $OS_LIB/nova/locks
[conductor]
workers = 1
[scheduler]
workers = 1
discover_hosts_in_cells_interval = -1
$(authtoken nova)
$(service_auth placement nova)
$(service_auth neutron nova)
[service_user]
send_service_user_token = true
auth_url = http://$OS_HOST:$PORT_KEYSTONE/v3
auth_type = password
project_domain_name = Default
user_domain_name = Default
project_name = service
username = nova
password = $OS_SERVICE_PASSWORD
[glance]
valid_interfaces = internal
[cinder]
os_region_name = RegionOne
[vnc]
enabled = false
[spice]
enabled = false
[oslo_messaging_notifications]
driver = noop
EOF
  # nestplane reads back the user-data of its own servers (OS-EXT-SRV-ATTR:user_data, microversion >= 2.3).
  # Upstream lets only admins see extended attributes; this cloud also lets a project's members see
  # them on their own servers.
  cat >"$OS_ETC/nova/policy.yaml" <<'EOF'
"os_compute_api:os-extended-server-attributes": "role:admin or (role:member and project_id:%(project_id)s)"
EOF
  cat >"$OS_ETC/nova/nova-compute-fake.conf" <<EOF
[DEFAULT]
host = $OS_FAKE_HOST
compute_driver = fake.FakeDriver
# Each compute service keeps its node identity (compute_id) in its own state_path.
state_path = $OS_LIB/nova/compute-fake
instances_path = $OS_LIB/nova/compute-fake/instances
log_file = $OS_LOGS/nova-compute-fake.log
EOF
  cat >"$OS_ETC/nova/nova-compute-qemu.conf" <<EOF
[DEFAULT]
host = $OS_LIBVIRT_HOST
compute_driver = libvirt.LibvirtDriver
state_path = $OS_LIB/nova/compute-qemu
instances_path = $OS_LIB/nova/compute-qemu/instances
log_file = $OS_LOGS/nova-compute-qemu.log
# Leave most of the machine to the management cluster.
reserved_host_memory_mb = 4096
reserved_host_cpus = 0
initial_cpu_allocation_ratio = 8.0
initial_ram_allocation_ratio = 1.0
vif_plugging_timeout = 120
[libvirt]
# /dev/kvm is backed by PVM here and hangs stock kernels: TCG only.
virt_type = qemu
cpu_mode = none
connection_uri = qemu:///system
inject_partition = -2
EOF
}

write_neutron_config() {
  mkdir -p "$OS_ETC/neutron/plugins/ml2" "$OS_LIB/neutron"
  cp "$OS_VENV/etc/neutron/api-paste.ini" "$OS_ETC/neutron/"
  cat >"$OS_ETC/neutron/neutron.conf" <<EOF
[DEFAULT]
core_plugin = ml2
service_plugins =
auth_strategy = keystone
transport_url = $OS_TRANSPORT_URL
state_path = $OS_LIB/neutron
api_paste_config = $OS_ETC/neutron/api-paste.ini
notify_nova_on_port_status_changes = true
notify_nova_on_port_data_changes = true
api_workers = 1
rpc_workers = 1
rpc_state_report_workers = 0
[database]
connection = $(os_db_url neutron)
$(authtoken neutron)
$(service_auth nova neutron)
[oslo_concurrency]
lock_path = $OS_LIB/neutron/locks
[agent]
root_helper = env
root_helper_daemon =
report_interval = 10
EOF
  cat >"$OS_ETC/neutron/plugins/ml2/ml2_conf.ini" <<EOF
[ml2]
type_drivers = flat
tenant_network_types =
mechanism_drivers = macvtap
extension_drivers = port_security
[ml2_type_flat]
flat_networks = physnet1
[macvtap]
physical_interface_mappings = physnet1:$OS_VETH_PHYS
[securitygroup]
firewall_driver = noop
enable_security_group = true
EOF
  local host
  for host in "$OS_FAKE_HOST" "$OS_LIBVIRT_HOST"; do
    cat >"$OS_ETC/neutron/macvtap-$host.ini" <<EOF
[DEFAULT]
host = $host
EOF
  done
}

write_toxiproxy_config() {
  mkdir -p "$OS_ETC/toxiproxy"
  cat >"$OS_ETC/toxiproxy/proxies.json" <<EOF
[
  {"name": "nova", "listen": "$OS_HOST:$PORT_NOVA_PROXY", "upstream": "$OS_HOST:$PORT_NOVA", "enabled": true},
  {"name": "neutron", "listen": "$OS_HOST:$PORT_NEUTRON_PROXY", "upstream": "$OS_HOST:$PORT_NEUTRON", "enabled": true}
]
EOF
}

# libvirt has no configuration of its own here (no libvirt-daemon-system): QEMU runs as root,
# without a security driver, cgroups of its own or virtlogd, and nothing autostarts.
write_libvirt_config() {
  mkdir -p /etc/libvirt "$OS_ETC/libvirt"
  cat >"$OS_ETC/libvirt/libvirtd.conf" <<EOF
unix_sock_group = "root"
unix_sock_rw_perms = "0770"
auth_unix_rw = "none"
auth_unix_ro = "none"
log_outputs = "3:file:$OS_LOGS/libvirtd-daemon.log"
EOF
  cat >/etc/libvirt/qemu.conf <<'EOF'
# Written by nestplane hack/openstack/up.sh: QEMU for the test cloud's libvirt compute host.
user = "root"
group = "root"
dynamic_ownership = 0
remember_owner = 0
security_driver = "none"
cgroup_controllers = [ ]
namespaces = [ ]
stdio_handler = "file"
EOF
}

write_all_configs() {
  write_mariadb_config
  write_rabbitmq_config
  write_keystone_config
  write_glance_config
  write_placement_config
  write_nova_config
  write_neutron_config
  write_toxiproxy_config
  write_libvirt_config
}
