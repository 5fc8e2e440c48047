#!/usr/bin/env bash
# Builds the operator (release) and imports it into containerd as an image.
# The tag carries a hash of the binary, so a rebuilt operator rolls its Deployment.
# When the test cloud's registry mirror runs (hack/openstack/registry.sh), pushes the image there
# too: worker VMs pull it (the tunnel agent's DaemonSet) through that mirror of its registry.
# Prints the image reference on stdout.
. "$(dirname "$0")/lib/common.sh"
# shellcheck source=openstack/lib.sh
. "$HACK_DIR/openstack/lib.sh"
# shellcheck source=openstack/registry.sh
. "$HACK_DIR/openstack/registry.sh"
cd "$REPO_ROOT"

cargo build --release --locked -p nestplane >&2
binary="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/release/nestplane"
# nestplane-launch is linked statically: pods copy it into images that carry no libraries.
host_target="$(rustc -vV | sed -n 's/^host: //p')"
RUSTFLAGS="-C target-feature=+crt-static" \
  cargo build --release --locked -p nestplane-launch --target "$host_target" >&2
launch="${CARGO_TARGET_DIR:-$REPO_ROOT/target}/$host_target/release/nestplane-launch"
tag="dev-$(cat "$binary" "$launch" | sha256sum | cut -c1-12)"
image="${NESTPLANE_IMAGE_REPOSITORY:-ghcr.io/nestplane/nestplane}:$tag"
archive="$NESTPLANE_CACHE/images/nestplane-$tag.tar"
mkdir -p "$NESTPLANE_CACHE/images"
CTR=(ctr --address /run/containerd/containerd.sock -n k8s.io)
if ! "${CTR[@]}" images ls -q "name==$image" | grep -qx "$image"; then
  # glibc and the few libraries the binary links come from this machine (Debian 12),
  # as in a distroless cc image; CA certificates for the OpenStack endpoints.
  python3 "$HACK_DIR/lib/oci_image.py" --name "$image" --out "$archive" \
    --host-binary "$binary:/usr/local/bin/nestplane" --file "$launch:/usr/local/bin/nestplane-launch" \
    --file /etc/ssl/certs/ca-certificates.crt:/etc/ssl/certs/ca-certificates.crt \
    --dir /tmp --user 65532:65532 --entrypoint /usr/local/bin/nestplane --cmd run >&2
  "${CTR[@]}" images import "$archive" >/dev/null
  rm -f "$archive"
  log "imported $image"
fi
# Under the path it has below its registry (ghcr.io/nestplane/nestplane -> nestplane/nestplane), as
# a mirror of that registry serves it. Blobs the registry has are not sent again.
if registry_up 2>/dev/null; then
  "${CTR[@]}" images push --hosts-dir "$OS_REGISTRY_HOSTS_DIR" "$OS_REGISTRY_ADDRESS/${image#*/}" "$image" >/dev/null
  log "pushed $image to https://$OS_REGISTRY_ADDRESS"
else
  log "the test cloud's registry (make openstack-up) is not up: $image not pushed; workers cannot pull it"
fi
echo "$image"
