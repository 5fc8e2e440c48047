#!/bin/sh
# Writes this node's CNI config once flanneld has leased the node's subnet, and again whenever the
# lease or the template changes. Runs beside flanneld in the kube-flannel DaemonSet (busybox sh).
#
# The template (cni-conf.json of the kube-flannel-cfg ConfigMap) is a conflist of the standard
# bridge, host-local and portmap plugins with two placeholders: "@FLANNEL_MTU@" (with its quotes,
# replaced by a number) and @FLANNEL_SUBNET@ (the node's subnet, without host bits: host-local
# refuses an address such as flanneld's 10.244.1.1/24).
#
# `--once` writes the config if the lease is there and exits (0 when written, 1 when not).
set -eu

subnet_env="${FLANNEL_SUBNET_ENV:-/run/flannel/subnet.env}"
template="${FLANNEL_CNI_TEMPLATE:-/etc/kube-flannel/cni-conf.json}"
conflist="${FLANNEL_CNI_CONFLIST:-/etc/cni/net.d/10-flannel.conflist}"

# network_of A.B.C.D/N: the network address of an IPv4 CIDR, e.g. 10.244.1.0/24.
network_of() {
  address="${1%/*}"
  prefix="${1#*/}"
  old_ifs="$IFS"
  IFS=. read -r a b c d <<EOF
$address
EOF
  IFS="$old_ifs"
  n=$(((a << 24) | (b << 16) | (c << 8) | d))
  n=$((n & ((0xffffffff << (32 - prefix)) & 0xffffffff)))
  echo "$(((n >> 24) & 255)).$(((n >> 16) & 255)).$(((n >> 8) & 255)).$((n & 255))/$prefix"
}

# write_conflist: renders the template from the lease; the rename makes the new config appear whole.
write_conflist() {
  FLANNEL_SUBNET=""
  FLANNEL_MTU=""
  # shellcheck disable=SC1090 # written by flanneld at run time
  . "$subnet_env"
  if [ -z "$FLANNEL_SUBNET" ] || [ -z "$FLANNEL_MTU" ]; then
    echo "$subnet_env has no FLANNEL_SUBNET or FLANNEL_MTU" >&2
    return 1
  fi
  subnet="$(network_of "$FLANNEL_SUBNET")"
  sed -e "s#\"@FLANNEL_MTU@\"#$FLANNEL_MTU#" -e "s#@FLANNEL_SUBNET@#$subnet#" "$template" >"$conflist.tmp"
  mv "$conflist.tmp" "$conflist"
  echo "wrote $conflist: subnet $subnet, mtu $FLANNEL_MTU"
}

if [ "${1:-}" = "--once" ]; then
  [ -s "$subnet_env" ] || exit 1
  write_conflist
  exit 0
fi

trap 'exit 0' TERM INT
written=""
while :; do
  if [ -s "$subnet_env" ]; then
    current="$(cat "$subnet_env" "$template")"
    if [ "$current" != "$written" ] || [ ! -f "$conflist" ]; then
      write_conflist
      written="$current"
    fi
  fi
  sleep 5 &
  wait $!
done
