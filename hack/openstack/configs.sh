# shellcheck shell=bash
# The test cloud's configuration files, rendered from the templates under hack/openstack/etc/.
# Sourced after lib.sh by up.sh and render-configs.sh.
# The files are rewritten on each `make openstack-up`, so a change here takes effect on the next start.

OS_TEMPLATES="$OS_DIR/etc"

# render TEMPLATE [NAME=VALUE...]: prints $OS_TEMPLATES/TEMPLATE.in with each $NAME or ${NAME}
# replaced by lib.sh's setting of that name (every OS_* and PORT_*) or by a NAME=VALUE given here;
# $$ is a literal $. python's string.Template (python3 comes with install.sh), because a name
# without a value fails the render, where envsubst would silently write an empty string.
render() {
  local template="$OS_TEMPLATES/$1.in" name settings=()
  shift
  while read -r name; do
    settings+=("$name=${!name}")
  done < <(compgen -v OS_; compgen -v PORT_)
  python3 -c '
import string, sys
path, pairs = sys.argv[1], sys.argv[2:]
values = dict(pair.split("=", 1) for pair in pairs)
with open(path) as template:
    text = template.read()
try:
    sys.stdout.write(string.Template(text).substitute(values))
except (KeyError, ValueError) as error:
    sys.exit(f"{path}: no value for placeholder {error}")
' "$template" "${settings[@]}" "$@"
}

# render_to ETC TEMPLATE [NAME=VALUE...]: renders TEMPLATE into ETC under the template's own path.
render_to() {
  local etc=$1 template=$2
  shift 2
  mkdir -p "$(dirname "$etc/$template")"
  render "$template" "$@" >"$etc/$template"
}

# render_configs ETC: every configuration file of the cloud, written under ETC and nowhere else,
# so it can be rendered into a scratch directory to compare (hack/openstack/render-configs.sh).
render_configs() {
  local etc=$1 host
  # The keystonemiddleware section that validates tokens for a service, and keystoneauth sections
  # for service-to-service calls on internal endpoints.
  local glance_authtoken placement_authtoken nova_authtoken neutron_authtoken cinder_authtoken
  glance_authtoken="$(render sections/keystone_authtoken SERVICE_USER=glance)"
  placement_authtoken="$(render sections/keystone_authtoken SERVICE_USER=placement)"
  nova_authtoken="$(render sections/keystone_authtoken SERVICE_USER=nova)"
  neutron_authtoken="$(render sections/keystone_authtoken SERVICE_USER=neutron)"
  cinder_authtoken="$(render sections/keystone_authtoken SERVICE_USER=cinder)"
  local nova_placement_auth nova_neutron_auth neutron_nova_auth cinder_nova_auth
  nova_placement_auth="$(render sections/service_auth SECTION=placement SERVICE_USER=nova)"
  nova_neutron_auth="$(render sections/service_auth SECTION=neutron SERVICE_USER=nova)"
  neutron_nova_auth="$(render sections/service_auth SECTION=nova SERVICE_USER=neutron)"
  cinder_nova_auth="$(render sections/service_auth SECTION=nova SERVICE_USER=cinder)"

  render_to "$etc" mariadb/my.cnf
  render_to "$etc" rabbitmq/rabbitmq.conf
  render_to "$etc" keystone/keystone.conf DB_URL="$(os_db_url keystone)"
  render_to "$etc" glance/glance-api.conf DB_URL="$(os_db_url glance)" KEYSTONE_AUTHTOKEN="$glance_authtoken"
  render_to "$etc" placement/placement.conf DB_URL="$(os_db_url placement)" \
    KEYSTONE_AUTHTOKEN="$placement_authtoken"
  # Nova: one nova.conf for the API and the cell services, and one per compute host on top of it.
  render_to "$etc" nova/nova.conf DB_URL="$(os_db_url nova)" API_DB_URL="$(os_db_url nova_api)" \
    KEYSTONE_AUTHTOKEN="$nova_authtoken" PLACEMENT_AUTH="$nova_placement_auth" NEUTRON_AUTH="$nova_neutron_auth"
  # nestplane reads back the user-data of its own servers (OS-EXT-SRV-ATTR:user_data, microversion >= 2.3).
  # Upstream lets only admins see extended attributes; this cloud also lets a project's members see
  # them on their own servers.
  render_to "$etc" nova/policy.yaml
  render_to "$etc" nova/nova-compute-fake.conf
  render_to "$etc" nova/nova-compute-qemu.conf
  render_to "$etc" neutron/neutron.conf DB_URL="$(os_db_url neutron)" \
    KEYSTONE_AUTHTOKEN="$neutron_authtoken" NOVA_AUTH="$neutron_nova_auth"
  render_to "$etc" neutron/plugins/ml2/ml2_conf.ini
  render_to "$etc" cinder/cinder.conf DB_URL="$(os_db_url cinder)" \
    KEYSTONE_AUTHTOKEN="$cinder_authtoken" NOVA_AUTH="$cinder_nova_auth"
  # One macvtap agent per compute host name, each with its own host.
  for host in "$OS_FAKE_HOST" "$OS_LIBVIRT_HOST"; do
    render neutron/macvtap.ini HOST="$host" >"$etc/neutron/macvtap-$host.ini"
  done
  render_to "$etc" toxiproxy/proxies.json
  render_to "$etc" registry/config.yml
  # libvirt has no configuration of its own here (no libvirt-daemon-system): QEMU runs as root,
  # without a security driver, cgroups of its own or virtlogd, and nothing autostarts.
  # write_all_configs moves qemu.conf to /etc/libvirt.
  render_to "$etc" libvirt/libvirtd.conf
  render_to "$etc" libvirt/qemu.conf
}

# write_all_configs: the cloud's state directories, the paste files that ship with the services,
# every rendered file under $OS_ETC, and libvirt's qemu.conf in /etc/libvirt.
write_all_configs() {
  mkdir -p "$OS_LIB/glance/images" "$OS_LIB/glance/staging" "$OS_LIB/glance/tasks" \
    "$OS_LIB/nova/compute-fake/instances" "$OS_LIB/nova/compute-qemu/instances" "$OS_LIB/neutron" \
    "$OS_LIB/cinder/volumes" "$OS_LIB/cinder/conversion" "$OS_LIB/cinder/coordination"
  mkdir -p "$OS_ETC/glance" "$OS_ETC/nova" "$OS_ETC/neutron" "$OS_ETC/cinder"
  cp "$OS_VENV/etc/glance/glance-api-paste.ini" "$OS_ETC/glance/"
  cp "$OS_VENV/etc/nova/api-paste.ini" "$OS_ETC/nova/"
  cp "$OS_VENV/etc/neutron/api-paste.ini" "$OS_ETC/neutron/"
  cp "$OS_VENV/etc/cinder/api-paste.ini" "$OS_ETC/cinder/"
  render_configs "$OS_ETC"
  # libvirtd reads qemu.conf only from /etc/libvirt.
  mkdir -p /etc/libvirt
  mv "$OS_ETC/libvirt/qemu.conf" /etc/libvirt/qemu.conf
}
