#!/usr/bin/env bash
# Starts only the registry mirror (registry.sh) on a cloud whose network exists; `make openstack-up`
# starts it with everything else. Idempotent like up.sh.
. "$(dirname "$0")/lib.sh"
. "$OS_DIR/configs.sh"
. "$OS_DIR/registry.sh"

[ -n "$(ip -o addr show to "$OS_NET_GATEWAY")" ] ||
  die "$OS_NET_GATEWAY is not an address of this machine: start the cloud with make openstack-up"
"$HACK_DIR/build-binaries.sh" registry
render_to "$OS_ETC" registry/config.yml
start_registry
log "the registry is up on https://$OS_REGISTRY_ADDRESS (CA: $OS_REGISTRY_CA)"
