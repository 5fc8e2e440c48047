# shellcheck shell=bash
# The floor of a control plane's start on this machine: etcd and kube-apiserver, the binaries
# the control-plane images carry, started at once as plain processes with kubeadm's certificates
# until /readyz answers 200. Sourced by hack/bench.sh; sets FLOOR_S (median of FLOOR_RUNS).

floor_once() {
  local dir=$1 bin="$NESTPLANE_CACHE/kubernetes-$KUBERNETES_VERSION/bin"
  local etcd_bin="$NESTPLANE_CACHE/etcd-$ETCD_VERSION/bin/etcd" pki="$dir/pki" start end etcd_pid api_pid
  rm -rf "$dir/etcd" && mkdir -p "$dir/etcd"
  start=$(date +%s.%N)
  "$etcd_bin" --name floor --data-dir "$dir/etcd" \
    --listen-client-urls https://127.0.0.1:23790 --advertise-client-urls https://127.0.0.1:23790 \
    --listen-peer-urls https://127.0.0.1:23800 --initial-advertise-peer-urls https://127.0.0.1:23800 \
    --initial-cluster floor=https://127.0.0.1:23800 --listen-metrics-urls http://127.0.0.1:23810 \
    --client-cert-auth --trusted-ca-file "$pki/etcd/ca.crt" \
    --cert-file "$pki/etcd/server.crt" --key-file "$pki/etcd/server.key" \
    --peer-client-cert-auth --peer-trusted-ca-file "$pki/etcd/ca.crt" \
    --peer-cert-file "$pki/etcd/peer.crt" --peer-key-file "$pki/etcd/peer.key" \
    >"$dir/etcd.log" 2>&1 &
  etcd_pid=$!
  "$bin/kube-apiserver" --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port 16443 \
    --etcd-servers https://127.0.0.1:23790 --etcd-cafile "$pki/etcd/ca.crt" \
    --etcd-certfile "$pki/apiserver-etcd-client.crt" --etcd-keyfile "$pki/apiserver-etcd-client.key" \
    --client-ca-file "$pki/ca.crt" --tls-cert-file "$pki/apiserver.crt" --tls-private-key-file "$pki/apiserver.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$pki/sa.pub" --service-account-signing-key-file "$pki/sa.key" \
    --service-cluster-ip-range 10.250.0.0/16 --authorization-mode Node,RBAC \
    --enable-admission-plugins NodeRestriction --allow-privileged \
    --kubelet-client-certificate "$pki/apiserver-kubelet-client.crt" \
    --kubelet-client-key "$pki/apiserver-kubelet-client.key" \
    --proxy-client-cert-file "$pki/front-proxy-client.crt" --proxy-client-key-file "$pki/front-proxy-client.key" \
    --requestheader-client-ca-file "$pki/front-proxy-ca.crt" --requestheader-allowed-names front-proxy-client \
    --requestheader-extra-headers-prefix X-Remote-Extra- --requestheader-group-headers X-Remote-Group \
    --requestheader-username-headers X-Remote-User \
    >"$dir/apiserver.log" 2>&1 &
  api_pid=$!
  # /readyz is open to anonymous users once the bootstrap roles exist, which /readyz includes.
  until curl -fsk --max-time 1 https://127.0.0.1:16443/readyz >/dev/null 2>&1; do
    kill -0 "$api_pid" 2>/dev/null || { tail -20 "$dir/apiserver.log" >&2; die "kube-apiserver exited (floor)"; }
    [ "$(echo "$(date +%s.%N) - $start > 120" | bc)" = 0 ] || die "the floor's /readyz did not answer within 120 s"
    sleep 0.05
  done
  end=$(date +%s.%N)
  # SIGKILL: a terminated kube-apiserver would wait on the etcd stopped beside it.
  kill -9 "$api_pid" "$etcd_pid" 2>/dev/null || true
  wait "$api_pid" "$etcd_pid" 2>/dev/null || true
  echo "scale=2; ($end - $start) / 1" | bc
}

bench_floor() {
  local runs="${FLOOR_RUNS:-3}" dir="$NESTPLANE_STATE/bench-floor" i t times=()
  rm -rf "$dir" && mkdir -p "$dir"
  # Made once, outside the timing. kubeadm will not name a loopback address; etcd's certificate
  # names 127.0.0.1 anyway, and /readyz is read without checking the API server's.
  "$NESTPLANE_CACHE/kubernetes-$KUBERNETES_VERSION/bin/kubeadm" init phase certs all \
    --kubernetes-version "$KUBERNETES_VERSION" --cert-dir "$dir/pki" \
    --apiserver-advertise-address 192.0.2.250 --service-cidr 10.250.0.0/16 >/dev/null
  for i in $(seq 1 "$runs"); do
    t="$(floor_once "$dir")"
    log "floor run $i: etcd + kube-apiserver as plain processes, /readyz after ${t}s"
    times+=("$t")
  done
  rm -rf "$dir"
  FLOOR_S="$(printf '%s\n' "${times[@]}" | median)"
  log "floor: median ${FLOOR_S}s of $runs"
}
