# shellcheck shell=bash
# The test cloud's container registry (CNCF distribution), which workers use as a registry mirror:
# `make operator-up` pushes the operator image to it (hack/operator-image.sh), and NodePools in the
# e2e tests name it in spec.registryMirrors with its CA as caBundle. Sourced by up.sh after lib.sh
# and configs.sh, once the provider network's gateway address exists.
#
# TLS with a certificate for the gateway address, signed by a CA of this machine that is made once
# and kept in $OS_REGISTRY_STATE (a fresh machine, or WIPE=1, makes a new one). Anyone who reaches
# the gateway (the host, guests, pods: see setup_network's nftables rules) may pull and push.

# registry_ca: the CA, unless it exists.
registry_ca() {
  [ -s "$OS_REGISTRY_CA" ] && [ -s "$OS_REGISTRY_STATE/ca.key" ] && return 0
  log "making the registry's CA in $OS_REGISTRY_STATE"
  (umask 077 && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes \
    -keyout "$OS_REGISTRY_STATE/ca.key" -out "$OS_REGISTRY_CA" -days 3650 \
    -subj "/O=nestplane/CN=nestplane test registry CA $(hostname)" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null)
  chmod 0644 "$OS_REGISTRY_CA"
  # A new CA invalidates the serving certificate of the old one.
  rm -f "$OS_REGISTRY_STATE/server.crt"
}

# registry_server_cert: a serving certificate for the gateway address, issued again when it is
# missing, not from the current CA, not for this address, or expires within 30 days.
registry_server_cert() {
  local crt="$OS_REGISTRY_STATE/server.crt" key="$OS_REGISTRY_STATE/server.key"
  if [ -s "$crt" ] && [ -s "$key" ] &&
    openssl verify -CAfile "$OS_REGISTRY_CA" "$crt" >/dev/null 2>&1 &&
    openssl x509 -in "$crt" -noout -checkend $((30 * 24 * 3600)) >/dev/null &&
    openssl x509 -in "$crt" -noout -checkip "$OS_NET_GATEWAY" | grep -q 'does match'; then
    return 0
  fi
  log "issuing the registry's serving certificate for $OS_NET_GATEWAY"
  (umask 077 && openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$key" \
    -subj "/O=nestplane/CN=$OS_NET_GATEWAY" 2>/dev/null |
    openssl x509 -req -CA "$OS_REGISTRY_CA" -CAkey "$OS_REGISTRY_STATE/ca.key" \
      -set_serial "0x$(openssl rand -hex 16)" -days 365 -out "$crt" \
      -extfile <(printf '%s\n' "subjectAltName=IP:$OS_NET_GATEWAY" "basicConstraints=critical,CA:FALSE" \
        "keyUsage=critical,digitalSignature" "extendedKeyUsage=serverAuth") 2>/dev/null)
  chmod 0644 "$crt"
}

# registry_hosts_dir: hosts.toml for clients on this machine (`ctr --hosts-dir`): the registry's
# own address, verified with the CA. A `host` table, not a top-level `ca`: containerd 1.6 refuses a
# hosts.toml without one.
registry_hosts_dir() {
  mkdir -p "$OS_REGISTRY_HOSTS_DIR/$OS_REGISTRY_ADDRESS"
  cat >"$OS_REGISTRY_HOSTS_DIR/$OS_REGISTRY_ADDRESS/hosts.toml" <<TOML
server = "https://$OS_REGISTRY_ADDRESS"

[host."https://$OS_REGISTRY_ADDRESS"]
  capabilities = ["pull", "resolve", "push"]
  ca = "$OS_REGISTRY_CA"
TOML
}

registry_up() {
  curl -fsS -o /dev/null --max-time 2 --cacert "$OS_REGISTRY_CA" "https://$OS_REGISTRY_ADDRESS/v2/"
}

start_registry() {
  [ -x "$REGISTRY_BIN/registry" ] || die "the registry is not built: hack/build-binaries.sh registry"
  mkdir -p "$OS_REGISTRY_STATE/data"
  registry_ca
  registry_server_cert
  registry_hosts_dir
  # Restarted when its configuration or serving certificate changes. No tracing exporter: the
  # registry would otherwise send spans to an OTLP collector on localhost that does not exist.
  os_daemon_start registry "$OS_ETC/registry" "$OS_REGISTRY_STATE/server.crt" -- env OTEL_TRACES_EXPORTER=none \
    "$REGISTRY_BIN/registry" serve "$OS_ETC/registry/config.yml"
  wait_for "the registry on $OS_REGISTRY_ADDRESS" 30 registry_up
}
