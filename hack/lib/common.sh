# shellcheck shell=bash
# Shared settings for every hack/ script. Source it; do not run it.
set -euo pipefail

HACK_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC2034  # read by the scripts that source this file
REPO_ROOT="$(cd "$HACK_DIR/.." && pwd)"
# shellcheck source=../versions.env
. "$HACK_DIR/versions.env"
# shellcheck source=../network.env
. "$HACK_DIR/network.env"

# Heavy builds are cached per component and version; state of running daemons lives apart.
NESTPLANE_CACHE="${NESTPLANE_CACHE:-$HOME/.cache/nestplane}"
NESTPLANE_STATE="${NESTPLANE_STATE:-/var/lib/nestplane}"
export GOFLAGS="${GOFLAGS:--mod=mod}"
export GOTOOLCHAIN="${GOTOOLCHAIN:-local}"

log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
die() { log "error: $*"; exit 1; }

k8s_minor() { local v="${KUBERNETES_VERSION#v}"; v="${v#*.}"; echo "${v%%.*}"; }
