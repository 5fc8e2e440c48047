#!/usr/bin/env bash
# Renders the test cloud's configuration files into DIR (default: a new temporary directory) and
# prints DIR. Touches nothing else: to review a template change without `make openstack-up`.
. "$(dirname "$0")/lib.sh"
. "$OS_DIR/configs.sh"

out="${1:-$(mktemp -d)}"
mkdir -p "$out"
render_configs "$out"
echo "$out"
