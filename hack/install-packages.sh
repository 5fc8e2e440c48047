#!/usr/bin/env bash
# Installs the Debian packages the management cluster and `make lint` need. Idempotent: a second run installs nothing.
# Package postinst scripts must not start daemons: the project starts and stops its own.
. "$(dirname "$0")/lib/common.sh"

packages=(
  containerd runc containernetworking-plugins
  iptables conntrack socat ethtool iproute2 kmod
  busybox-static ca-certificates curl jq python3
  gcc libc6-dev
  shellcheck
)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  log "system packages present"
else
  log "installing: ${missing[*]}"
  # policy-rc.d 101 keeps invoke-rc.d from starting containerd behind our back.
  printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  if [ -z "$(find /var/lib/apt/lists -maxdepth 1 -name '*Packages*' -mmin -1440 2>/dev/null | head -1)" ]; then
    apt-get update -qq
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Go: the machine's toolchain builds Kubernetes if it is new enough.
go_minor="$(go env GOVERSION 2>/dev/null | sed -n 's/^go1\.\([0-9]*\).*/\1/p')"
if [ -z "$go_minor" ] || [ "$go_minor" -lt 25 ]; then
  die "Go >= 1.25 is needed to build Kubernetes $KUBERNETES_VERSION (found: $(go version 2>&1))"
fi
