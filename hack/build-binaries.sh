#!/usr/bin/env bash
# Builds the pinned third-party binaries from their Go modules into
#   $NESTPLANE_CACHE/<component>-<version>/bin/
# A finished build leaves a `.complete` marker, so a second run only checks markers.
# Usage: hack/build-binaries.sh [kubernetes|etcd|coredns|local-volume-provisioner|helm|toxiproxy|flannel|registry|pause ...]
. "$(dirname "$0")/lib/common.sh"

build_date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"

# prepare_module DIR MODULE VERSION: an empty wrapper module that requires MODULE@VERSION.
prepare_module() {
  local dir=$1 module=$2 version=$3
  mkdir -p "$dir"
  cat >"$dir/go.mod" <<MOD
module nestplane.local/build
go 1.25
require $module $version
MOD
}

done_marker() { [ -f "$1/.complete" ]; }

build_kubernetes() {
  local out="$NESTPLANE_CACHE/kubernetes-$KUBERNETES_VERSION"
  done_marker "$out" && return 0
  local src="$NESTPLANE_CACHE/src/kubernetes-$KUBERNETES_VERSION"
  local staging_version="v0.${KUBERNETES_VERSION#v1.}"
  prepare_module "$src" k8s.io/kubernetes "$KUBERNETES_VERSION"
  # k8s.io/kubernetes replaces its staging modules with local paths; point them at the published tags.
  local gomod
  gomod="$(cd "$src" && go mod download -json "k8s.io/kubernetes@$KUBERNETES_VERSION" | sed -n 's/.*"GoMod": "\(.*\)",/\1/p')"
  {
    echo "replace ("
    sed -n 's#^\s*\(k8s.io/[a-z0-9-]*\) => ./staging/src/.*#\t\1 => \1 '"$staging_version"'#p' "$gomod"
    echo ")"
  } >>"$src/go.mod"
  local minor; minor="$(k8s_minor)"
  local ldflags="-s -w"
  for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$KUBERNETES_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=$build_date"
  done
  log "building Kubernetes $KUBERNETES_VERSION (cold: about 15 minutes on 2 cores)"
  mkdir -p "$out/bin"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$out/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kube-proxy \
    k8s.io/kubernetes/cmd/kubelet \
    k8s.io/kubernetes/cmd/kubeadm \
    k8s.io/kubernetes/cmd/kubectl)
  touch "$out/.complete"
}

# build_simple NAME MODULE VERSION LDFLAGS PACKAGE...
build_simple() {
  local name=$1 module=$2 version=$3 ldflags=$4; shift 4
  local out="$NESTPLANE_CACHE/$name-$version"
  done_marker "$out" && return 0
  local src="$NESTPLANE_CACHE/src/$name-$version"
  prepare_module "$src" "$module" "$version"
  log "building $name $version"
  mkdir -p "$out/bin"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w $ldflags" -o "$out/bin/" "$@")
  touch "$out/.complete"
}

build_etcd() {
  local out="$NESTPLANE_CACHE/etcd-$ETCD_VERSION"
  done_marker "$out" && return 0
  log "building etcd $ETCD_VERSION"
  mkdir -p "$out/bin"
  local src="$NESTPLANE_CACHE/src/etcd-$ETCD_VERSION"
  prepare_module "$src" go.etcd.io/etcd/server/v3 "$ETCD_VERSION"
  # Both main packages end in /v3, so each gets an explicit output name.
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/bin/etcd" go.etcd.io/etcd/server/v3)
  src="$NESTPLANE_CACHE/src/etcdctl-$ETCD_VERSION"
  prepare_module "$src" go.etcd.io/etcd/etcdctl/v3 "$ETCD_VERSION"
  (cd "$src" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/bin/etcdctl" go.etcd.io/etcd/etcdctl/v3)
  touch "$out/.complete"
}

build_coredns() {
  build_simple coredns github.com/coredns/coredns "$COREDNS_VERSION" \
    "-X github.com/coredns/coredns/coremain.GitCommit=$COREDNS_VERSION" github.com/coredns/coredns
}

build_helm() {
  build_simple helm helm.sh/helm/v3 "$HELM_VERSION" \
    "-X helm.sh/helm/v3/internal/version.version=$HELM_VERSION" helm.sh/helm/v3/cmd/helm
}

build_toxiproxy() {
  build_simple toxiproxy github.com/Shopify/toxiproxy/v2 "$TOXIPROXY_VERSION" \
    "-X github.com/Shopify/toxiproxy/v2.Version=$TOXIPROXY_VERSION" \
    github.com/Shopify/toxiproxy/v2/cmd/server github.com/Shopify/toxiproxy/v2/cmd/cli
}

# The registry server of CNCF distribution (the test cloud's registry mirror, hack/registry), with
# the version its own Makefile stamps in.
build_registry() {
  local pkg=github.com/distribution/distribution/v3
  build_simple registry "$pkg" "$DISTRIBUTION_VERSION" \
    "-X $pkg/version.version=$DISTRIBUTION_VERSION -X $pkg/version.mainpkg=$pkg" "$pkg/cmd/registry"
}

# flanneld as flannel's Makefile builds it on amd64: with cgo (the UDP backend's proxy is C and
# its amd64 files do not build without it), linked statically, with the version flag. Go's own
# resolver and user lookup (netgo, osusergo) keep glibc's NSS, which a static binary cannot load
# in an image without glibc, out of it.
# flanneld links every backend, and the proxy refuses the TencentCloud VPC SDK that one of them
# imports: a stand-in (hack/stubs/tencentcloud-vpc) whose calls all fail takes its place.
# The main package is the module root, so the binary gets flannel's own name explicitly.
build_flannel() {
  local out="$NESTPLANE_CACHE/flannel-$FLANNEL_VERSION"
  done_marker "$out" && return 0
  local src="$NESTPLANE_CACHE/src/flannel-$FLANNEL_VERSION"
  prepare_module "$src" github.com/flannel-io/flannel "$FLANNEL_VERSION"
  echo "replace github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/vpc => $HACK_DIR/stubs/tencentcloud-vpc" \
    >>"$src/go.mod"
  log "building flannel $FLANNEL_VERSION"
  mkdir -p "$out/bin"
  (cd "$src" && CGO_ENABLED=1 go build -trimpath -tags netgo,osusergo \
    -ldflags "-s -w -X github.com/flannel-io/flannel/pkg/version.Version=$FLANNEL_VERSION -extldflags -static" \
    -o "$out/bin/flanneld" github.com/flannel-io/flannel)
  touch "$out/.complete"
}

# Small programs of our own under hack/cmd/ (the pause container, the smoke-test server, the
# volume provisioner), cached by a hash of their source and pinned dependencies.
build_local() {
  local name=$1 dir="$HACK_DIR/cmd/$1"
  local sources=("$dir"/*.go "$dir"/go.mod)
  [ ! -f "$dir/go.sum" ] || sources+=("$dir/go.sum")
  local hash; hash="$(cat "${sources[@]}" | sha256sum | cut -c1-12)"
  local out="$NESTPLANE_CACHE/$name-$hash"
  if ! done_marker "$out"; then
    mkdir -p "$out/bin"
    (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$out/bin/$name" .)
    touch "$out/.complete"
  fi
  ln -sfn "$out" "$NESTPLANE_CACHE/$name-current"
}
build_pause() { build_local pause; }
build_smoke() { build_local smoke; }
build_local_volume_provisioner() { build_local local-volume-provisioner; }

# One build at a time: `make up` and `make openstack-up` started together on a fresh machine would
# otherwise write the same wrapper go.mod at once.
mkdir -p "$NESTPLANE_CACHE"
exec 9>"$NESTPLANE_CACHE/.build-binaries.lock"
flock 9

components=("$@")
[ ${#components[@]} -gt 0 ] || components=(pause smoke etcd kubernetes coredns local-volume-provisioner helm flannel)
for c in "${components[@]}"; do
  "build_${c//-/_}"
done
