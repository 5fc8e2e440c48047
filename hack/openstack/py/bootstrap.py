"""Creates what the test cloud's users need, idempotently, in one process (the CLI costs ~2 s a call).

  bootstrap.py identity   services, endpoints, service users, projects, roles; clouds-admin.yaml
  bootstrap.py resources  compute hosts, zones, flavors, network, volume types, images, quotas, nestplane's
                          application credential, clouds.yaml and its Kubernetes Secret form

Settings come from NSP_* variables that hack/openstack/up.sh sets (see lib.sh).
"""

import hashlib
import json
import os
import subprocess
import sys
import time

import openstack
import yaml

E = {k[len("NSP_"):]: v for k, v in os.environ.items() if k.startswith("NSP_")}
HOST = E["OS_HOST"]
# What clients use (the catalog's public interface, clouds.yaml): also reachable from pods.
PUBLIC = E["OS_PUBLIC_HOST"]
KEYSTONE = f"http://{HOST}:{E['PORT_KEYSTONE']}/v3"
KEYSTONE_PUBLIC = f"http://{PUBLIC}:{E['PORT_KEYSTONE']}/v3"
REGION = "RegionOne"
STATE = E["OS_STATE"]

# (service name, type, public URL, internal URL). Public Nova and Neutron go through toxiproxy.
# Keystone's own endpoints come from `keystone-manage bootstrap`, once; they are here so that a
# cloud bootstrapped with other URLs converges too.
SERVICES = [
    ("keystone", "identity", KEYSTONE_PUBLIC, KEYSTONE),
    ("glance", "image", f"http://{PUBLIC}:{E['PORT_GLANCE']}", f"http://{HOST}:{E['PORT_GLANCE']}"),
    ("placement", "placement", f"http://{PUBLIC}:{E['PORT_PLACEMENT']}", f"http://{HOST}:{E['PORT_PLACEMENT']}"),
    ("nova", "compute", f"http://{PUBLIC}:{E['PORT_NOVA_PROXY']}/v2.1", f"http://{HOST}:{E['PORT_NOVA']}/v2.1"),
    ("neutron", "network", f"http://{PUBLIC}:{E['PORT_NEUTRON_PROXY']}", f"http://{HOST}:{E['PORT_NEUTRON']}"),
    # Cinder's v3 API without a project ID in the URL (microversion 3.67 and later allow it).
    ("cinderv3", "block-storage", f"http://{PUBLIC}:{E['PORT_CINDER']}/v3", f"http://{HOST}:{E['PORT_CINDER']}/v3"),
]
# Projects for nestplane: the main one, and one with tiny quotas that tests can exceed on purpose.
PROJECTS = {
    "nestplane": {"instances": 100, "cores": 200, "ram": 204800, "ports": 300, "volumes": 100, "gigabytes": 1000},
    "nestplane-quota": {"instances": 2, "cores": 4, "ram": 4096, "ports": 10, "volumes": 2, "gigabytes": 4},
}
# Volume types besides Cinder's __DEFAULT__, for root volumes that name one.
VOLUME_TYPES = ("nestplane-standard",)
USER_PASSWORD = "nestplane-user"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] bootstrap: {msg}", file=sys.stderr, flush=True)


def admin():
    return openstack.connect(
        auth_url=KEYSTONE, username="admin", password=E["OS_PASSWORD"], project_name="admin",
        user_domain_name="Default", project_domain_name="Default", region_name=REGION,
        interface="internal", identity_api_version="3",
    )


def ensure(find, create):
    found = find()
    return found if found is not None else create()


def write_file(path, text, mode=0o600):
    tmp = path + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode), "w") as f:
        f.write(text)
    os.replace(tmp, path)


def identity():
    conn = admin()
    idn = conn.identity
    for name, kind, public, internal in SERVICES:
        svc = ensure(lambda: idn.find_service(name), lambda: idn.create_service(name=name, type=kind))
        have = {e.interface: e for e in idn.endpoints(service_id=svc.id)}
        for interface, url in (("public", public), ("internal", internal), ("admin", internal)):
            if interface in have and have[interface].url != url:
                idn.update_endpoint(have[interface], url=url)
            elif interface not in have:
                idn.create_endpoint(service_id=svc.id, interface=interface, url=url, region_id=REGION)
    roles = {r: ensure(lambda r=r: idn.find_role(r), lambda r=r: idn.create_role(name=r))
             for r in ("admin", "member", "reader", "service")}
    service_project = ensure(lambda: idn.find_project("service"),
                             lambda: idn.create_project(name="service", domain_id="default"))
    for name in ("glance", "placement", "nova", "neutron", "cinder"):
        user = ensure(lambda: idn.find_user(name),
                      lambda: idn.create_user(name=name, password=E["OS_SERVICE_PASSWORD"], domain_id="default"))
        for role in ("admin", "service"):
            idn.assign_project_role_to_user(service_project, user, roles[role])
    nestplane_user = ensure(lambda: idn.find_user("nestplane"),
                            lambda: idn.create_user(name="nestplane", password=USER_PASSWORD, domain_id="default"))
    for project in PROJECTS:
        p = ensure(lambda: idn.find_project(project),
                   lambda: idn.create_project(name=project, domain_id="default"))
        idn.assign_project_role_to_user(p, nestplane_user, roles["member"])
    clouds = {"clouds": {"nestplane-admin": {
        "auth": {"auth_url": KEYSTONE_PUBLIC, "username": "admin", "password": E["OS_PASSWORD"],
                 "project_name": "admin", "user_domain_name": "Default", "project_domain_name": "Default"},
        "region_name": REGION, "interface": "public", "identity_api_version": 3}}}
    write_file(E["OS_ADMIN_CLOUDS_YAML"], yaml.safe_dump(clouds, sort_keys=False))
    log("identity ready")


def wait(what, timeout, probe):
    deadline = time.time() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.time() > deadline:
            sys.exit(f"bootstrap: timed out after {timeout}s waiting for {what} (logs: {E['OS_LOGS']})")
        time.sleep(2)


def compute_hosts(conn):
    hosts = [E["OS_FAKE_HOST"], E["OS_LIBVIRT_HOST"]]

    def computes_up():
        up = {s.host for s in conn.compute.services(binary="nova-compute") if s.state == "up"}
        return all(h in up for h in hosts)

    wait("nova-compute on both hosts", 240, computes_up)
    subprocess.run(["nova-manage", "--config-file", f"{E['OS_ETC']}/nova/nova.conf", "cell_v2", "discover_hosts"],
                   check=True, stdout=subprocess.DEVNULL)

    def agents_alive():
        alive = {a.host for a in conn.network.agents(binary="neutron-macvtap-agent") if a.is_alive}
        return all(h in alive for h in hosts)

    wait("a live macvtap agent for each compute host", 180, agents_alive)
    for host, zone in ((E["OS_FAKE_HOST"], E["OS_FAKE_AZ"]), (E["OS_LIBVIRT_HOST"], E["OS_LIBVIRT_AZ"])):
        agg = ensure(lambda: conn.compute.find_aggregate(zone),
                     lambda: conn.compute.create_aggregate(name=zone, availability_zone=zone))
        agg = conn.compute.get_aggregate(agg)
        if host not in (agg.hosts or []):
            conn.compute.add_host_to_aggregate(agg, host)

    def inventories():
        providers = list(conn.placement.resource_providers())
        return len(providers) >= 2 and all(
            list(conn.placement.resource_provider_inventories(p)) for p in providers)

    # A compute host whose inventory placement refuses never gets a server: fail here, not in a test.
    wait("both compute hosts' inventories in placement", 180, inventories)


# nestplane.worker runs the worker image (hack/worker-image): kubeadm's preflight wants 2 CPUs on
# a control-plane node only, but the kubelet, containerd, kube-proxy, flannel and CoreDNS want
# about 1 GiB; the disk holds the image (grown to it on first boot) and the node's images.
# One vCPU: QEMU 7.2's multi-threaded TCG crashed (a segfault in its second vCPU thread) while
# booting a 2-vCPU guest here, and this machine has two cores for all guests anyway.
FLAVORS = (("nestplane.tiny", 128, 1, 1), ("nestplane.small", 512, 1, 4), ("nestplane.worker", 2048, 1, 8))


def flavors(conn):
    for name, ram, vcpus, disk in FLAVORS:
        found = conn.compute.find_flavor(name)
        # Flavors are immutable: one that differs is replaced (servers keep a copy of theirs).
        if found is not None and (found.ram, found.vcpus, found.disk) != (ram, vcpus, disk):
            log(f"replacing flavor {name}: its size changed")
            conn.compute.delete_flavor(found)
            found = None
        if found is None:
            conn.compute.create_flavor(name=name, ram=ram, vcpus=vcpus, disk=disk, is_public=True)


def volumes(conn):
    def volume_service_up():
        return any(s.binary == "cinder-volume" and s.state == "up" and s.host.startswith(E["OS_CINDER_HOST"])
                   for s in conn.block_storage.services())

    # A volume asked for before the volume service reports its backend would go to "error".
    wait("cinder-volume", 120, volume_service_up)
    for name in VOLUME_TYPES:
        if conn.block_storage.find_type(name) is None:
            conn.block_storage.create_type(name=name, is_public=True)


def network(conn):
    net = conn.network.find_network("nestplane-net")
    if net is None:
        net = conn.network.create_network(
            name="nestplane-net", provider_network_type="flat", provider_physical_network="physnet1",
            is_shared=True, is_router_external=False)
    # Guests get a DNS server as on a real cloud's subnet: the gateway, where nothing answers (guests
    # reach nothing beyond this machine), but CoreDNS on a worker forwards to the node's resolv.conf
    # and refuses to start when it names no server.
    dns = [E["OS_NET_GATEWAY"]]
    subnet = conn.network.find_subnet("nestplane-subnet")
    if subnet is None:
        conn.network.create_subnet(
            name="nestplane-subnet", network_id=net.id, ip_version=4, cidr=E["OS_NET_CIDR"],
            gateway_ip=E["OS_NET_GATEWAY"], is_dhcp_enabled=False, dns_nameservers=dns,
            allocation_pools=[{"start": E["OS_NET_POOL_START"], "end": E["OS_NET_POOL_END"]}])
    elif subnet.dns_nameservers != dns:
        conn.network.update_subnet(subnet, dns_nameservers=dns)


def images(conn):
    os.makedirs(E["OS_IMAGES"], exist_ok=True)
    tiny = os.path.join(E["OS_IMAGES"], "nestplane-tiny.qcow2")
    if not os.path.exists(tiny):
        # An empty 64 MiB disk: enough for the fake driver, and QEMU runs it (to the firmware's
        # "no bootable device") on the libvirt host.
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", tiny + ".tmp", "64M"], check=True)
        os.replace(tiny + ".tmp", tiny)
    wanted = [("nestplane-tiny", tiny)]
    worker = os.path.join(E["OS_IMAGES"], "nestplane-worker.qcow2")
    if os.path.exists(worker):
        wanted.append(("nestplane-worker", worker))
    for name, path in wanted:
        existing = conn.image.find_image(name)
        if existing is not None and existing.status == "active" and same_content(existing, path):
            continue
        if existing is not None:
            log(f"replacing image {name}: its content changed")
            conn.image.delete_image(existing)
        conn.image.create_image(name=name, filename=path, disk_format="qcow2", container_format="bare",
                                visibility="public", wait=True)


def file_digest(path, algo):
    digest = hashlib.new(algo)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def same_content(image, path):
    """Whether Glance holds the file's bytes: by its multihash (sha512 by default), else its md5."""
    if image.hash_algo and image.hash_value:
        return file_digest(path, image.hash_algo) == image.hash_value
    return image.checksum is not None and file_digest(path, "md5") == image.checksum


def quotas(conn):
    for name, q in PROJECTS.items():
        project = conn.identity.find_project(name)
        conn.set_compute_quotas(project.id, instances=q["instances"], cores=q["cores"], ram=q["ram"])
        conn.network.update_quota(project.id, ports=q["ports"])
        conn.set_volume_quotas(project.id, volumes=q["volumes"], gigabytes=q["gigabytes"])


def application_credentials(conn):
    clouds = {"clouds": {}}
    for project in PROJECTS:
        path = os.path.join(STATE, f"appcred-{project}.json")
        cred = None
        if os.path.exists(path):
            with open(path) as f:
                cred = json.load(f)
            try:
                openstack.connect(auth_type="v3applicationcredential", auth_url=KEYSTONE,
                                  application_credential_id=cred["id"],
                                  application_credential_secret=cred["secret"]).authorize()
            except Exception:  # noqa: BLE001 - any failure means: make a new one
                cred = None
        if cred is None:
            user_conn = openstack.connect(
                auth_url=KEYSTONE, username="nestplane", password=USER_PASSWORD, project_name=project,
                user_domain_name="Default", project_domain_name="Default", region_name=REGION)
            user = user_conn.current_user_id
            name = f"nestplane-e2e-{project}"
            for old in user_conn.identity.application_credentials(user):
                if old.name == name:
                    user_conn.identity.delete_application_credential(user, old)
            created = user_conn.identity.create_application_credential(
                user, name=name, description="nestplane tests and operator")
            cred = {"id": created.id, "secret": created.secret}
            write_file(path, json.dumps(cred))
        clouds["clouds"][project] = {
            "auth_type": "v3applicationcredential",
            "auth": {"auth_url": KEYSTONE_PUBLIC, "application_credential_id": cred["id"],
                     "application_credential_secret": cred["secret"]},
            "region_name": REGION, "interface": "public", "identity_api_version": 3,
        }
    text = yaml.safe_dump(clouds, sort_keys=False)
    write_file(E["OS_CLOUDS_YAML"], text)
    secret = {"apiVersion": "v1", "kind": "Secret",
              "metadata": {"name": "nestplane-openstack", "namespace": "nestplane-system"},
              "type": "Opaque", "stringData": {"clouds.yaml": text}}
    write_file(E["OS_SECRET_YAML"], yaml.safe_dump(secret, sort_keys=False))


def resources():
    conn = admin()
    compute_hosts(conn)
    flavors(conn)
    network(conn)
    volumes(conn)
    images(conn)
    quotas(conn)
    application_credentials(conn)
    log("resources ready")


if __name__ == "__main__":
    {"identity": identity, "resources": resources}[sys.argv[1]]()
