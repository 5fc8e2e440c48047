#!/usr/bin/env bash
# Packages a test program (a binary of this machine, with the libraries it links) as an image and
# pushes it to the test cloud's registry, so that worker VMs pull it through their registry
# mirror as they would any image: hack/push-test-image.sh <binary> <image name without tag>.
# The tag is the binary's hash; prints the image reference on stdout.
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=openstack/lib.sh
. "$HACK_DIR/openstack/lib.sh"
# shellcheck source=openstack/registry.sh
. "$HACK_DIR/openstack/registry.sh"

[ $# -eq 2 ] || die "usage: $0 <binary> <image name>"
binary=$1
[ -x "$binary" ] || die "no executable $binary"
# Without debug information: a test build's is most of its size, and a guest under emulation
# pulls and unpacks every byte.
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
strip --strip-debug -o "$work/$(basename "$binary")" "$binary"
binary="$work/$(basename "$binary")"
image="$2:$(sha256sum "$binary" | cut -c1-12)"
registry_up 2>/dev/null || die "the test cloud's registry is not up: run \`make openstack-up\`"
CTR=(ctr --address /run/containerd/containerd.sock -n k8s.io)
if ! "${CTR[@]}" images ls -q "name==$image" | grep -qx "$image"; then
  archive="$work/image.tar"
  python3 "$HACK_DIR/lib/oci_image.py" --name "$image" --out "$archive" \
    --host-binary "$binary:/usr/local/bin/$(basename "$binary")" \
    --dir /tmp --user 65532:65532 --entrypoint "/usr/local/bin/$(basename "$binary")" >&2
  "${CTR[@]}" images import "$archive" >/dev/null
fi
"${CTR[@]}" images push --hosts-dir "$OS_REGISTRY_HOSTS_DIR" "$OS_REGISTRY_ADDRESS/${image#*/}" "$image" >/dev/null
log "pushed $image to https://$OS_REGISTRY_ADDRESS"
echo "$image"
