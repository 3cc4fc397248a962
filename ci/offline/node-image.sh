#!/usr/bin/env bash
# Offline kind node image: our Debian rootfs + Kubernetes binaries + every image
# kubeadm and the default CNI need, preloaded into containerd (namespace k8s.io)
# under exactly the names they expect, plus our netprobe test image.
# Prints NODE_IMAGE=... and NETPROBE_IMAGE=... lines.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
export DOCKER_BUILDKIT=0   # classic builder: FROM local tags, no registry lookups
NODE_DIR="$CI_DIR/offline/node"
GO_OUT="$CERTCTL_CACHE/go"
K8S_BIN="$GO_OUT/kubernetes/$KUBERNETES_VERSION"
KUBE_ROUTER_IMAGE="certctl.local/kube-router:$KUBE_ROUTER_VERSION"
NETPROBE_VERSION=$(hash_key "$CI_DIR/offline/netprobe")
NETPROBE_IMAGE="certctl.local/netprobe:$NETPROBE_VERSION"
NODE_REPO=certctl/kind-node

bash "$CI_DIR/offline/go-build.sh" all
node_rootfs=$(bash "$CI_DIR/offline/rootfs.sh" node)
net_rootfs=$(bash "$CI_DIR/offline/rootfs.sh" net)


# --- static-base: what static Go binaries want around them -------------------
STATIC_BASE=$(bash "$CI_DIR/offline/static-base.sh")

# --- component images, saved to one archive ---------------------------------
# component NAME BASE BINARY DEST: one image holding BINARY at DEST as entrypoint.
component() {
  local name=$1 base=$2 bin=$3 dest=$4 ctx
  [[ -x $bin ]] || die "missing binary $bin"
  ctx=$(mktemp -d)
  cp "$bin" "$ctx/bin"
  printf 'FROM %s\nCOPY bin %s\nLABEL org.certctl.offline=true\nENTRYPOINT ["%s"]\n' "$base" "$dest" "$dest" >"$ctx/Dockerfile"
  docker build -q -t "$name" "$ctx" >/dev/null
  rm -rf "$ctx"
  COMPONENTS+=("$name")
}
build_components() {
  local v=$KUBERNETES_VERSION c
  COMPONENTS=()
  for c in kube-apiserver kube-controller-manager kube-scheduler; do
    component "registry.k8s.io/$c:$v" "$STATIC_BASE" "$K8S_BIN/$c" "/usr/local/bin/$c"
  done
  component "registry.k8s.io/kube-proxy:$v" "$net_rootfs" "$K8S_BIN/kube-proxy" /usr/local/bin/kube-proxy
  component "registry.k8s.io/etcd:${ETCD_VERSION#v}-0" "$STATIC_BASE" "$GO_OUT/etcd/$ETCD_VERSION/etcd" /usr/local/bin/etcd
  component "registry.k8s.io/coredns/coredns:$COREDNS_VERSION" "$STATIC_BASE" "$GO_OUT/coredns/$COREDNS_VERSION/coredns" /coredns
  component "registry.k8s.io/pause:$PAUSE_VERSION" scratch "$GO_OUT/pause/$PAUSE_VERSION/pause" /pause
  component "$KUBE_ROUTER_IMAGE" "$net_rootfs" "$GO_OUT/kube-router/$KUBE_ROUTER_VERSION/kube-router" /usr/local/bin/kube-router
  component "$NETPROBE_IMAGE" "$STATIC_BASE" "$GO_OUT/netprobe/$NETPROBE_VERSION/netprobe" /usr/local/bin/netprobe
  # Every name kubeadm will ask for must be among them.
  local want
  for want in $("$K8S_BIN/kubeadm" config images list --kubernetes-version "$v" 2>/dev/null); do
    [[ " ${COMPONENTS[*]} " == *" $want "* ]] || die "kubeadm $v expects $want, which is not built"
  done
  mkdir -p "$CERTCTL_CACHE/node"
  docker save "${COMPONENTS[@]}" -o "$IMAGES_TAR.tmp"
  mv "$IMAGES_TAR.tmp" "$IMAGES_TAR"
  # Archives of earlier keys are dead weight.
  find "$CERTCTL_CACHE/node" -name 'images-*.tar' ! -name "$(basename "$IMAGES_TAR")" -delete
}
go_keys=""
for c in kubernetes etcd coredns pause kube-router crictl netprobe; do go_keys+="$(stage_key "$(go_stage "$c")") "; done
components_key=$(hash_key "$go_keys" "$STATIC_BASE" "$net_rootfs" "$(declare -f build_components component)")
# One archive at a time (see build_components): switching versions re-saves it (a minute),
# while the version-named stamps keep the node images themselves.
IMAGES_TAR="$CERTCTL_CACHE/node/images-$components_key.tar"
[[ -f $IMAGES_TAR ]] || rm -f "$CERTCTL_CACHE/stamps/$(k8s_stage node-components)"
stage "$(k8s_stage node-components)" "$components_key" build_components

# --- node image ----------------------------------------------------------------
render() { sed -e "s|@PAUSE_VERSION@|$PAUSE_VERSION|g" -e "s|@KUBE_ROUTER_IMAGE@|$KUBE_ROUTER_IMAGE|g" "$1"; }

build_node() {
  local ctx b name="certctl-node-build-$$"
  ctx=$(mktemp -d)
  mkdir -p "$ctx/bin"
  for b in kubeadm kubelet kubectl; do cp "$K8S_BIN/$b" "$ctx/bin/"; done
  cp "$GO_OUT/crictl/$CRICTL_VERSION/crictl" "$ctx/bin/"
  cp "$NODE_DIR"/{entrypoint,kubelet-cgroups,kubelet.service,10-kubeadm.conf,crictl.yaml} "$ctx/"
  cp "$CI_DIR/runtime/certctl-runc" "$ctx/"
  render "$NODE_DIR/containerd-config.toml.in" >"$ctx/containerd-config.toml"
  render "$NODE_DIR/default-cni.yaml.in" >"$ctx/default-cni.yaml"
  echo "$KUBERNETES_VERSION" >"$ctx/version"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $node_rootfs
COPY bin/ /usr/bin/
COPY entrypoint /usr/local/bin/certctl-node-entrypoint
COPY kubelet-cgroups /usr/local/bin/certctl-kubelet-cgroups
COPY certctl-runc /usr/local/sbin/certctl-runc
COPY kubelet.service /etc/systemd/system/kubelet.service
COPY 10-kubeadm.conf /etc/systemd/system/kubelet.service.d/10-kubeadm.conf
COPY containerd-config.toml /etc/containerd/config.toml
COPY crictl.yaml /etc/crictl.yaml
COPY version /kind/version
COPY default-cni.yaml /kind/manifests/default-cni.yaml
RUN set -e; mkdir -p /opt/cni/bin /etc/cni/net.d /etc/kubernetes/manifests; \
    for p in /usr/lib/cni/*; do ln -sf "\$p" /opt/cni/bin/; done; \
    systemctl enable kubelet.service containerd.service; \
    systemctl set-default multi-user.target; \
    systemctl mask getty.target console-getty.service systemd-udevd.service systemd-udev-trigger.service \
      systemd-modules-load.service systemd-firstboot.service systemd-remount-fs.service \
      sys-kernel-debug.mount sys-kernel-tracing.mount sys-kernel-config.mount systemd-journald-audit.socket \
      apt-daily.timer apt-daily-upgrade.timer dpkg-db-backup.timer e2scrub_all.timer e2scrub_reap.service; \
    : >/etc/machine-id; rm -f /var/lib/dbus/machine-id; ln -s /etc/machine-id /var/lib/dbus/machine-id; \
    chmod 0755 /usr/local/bin/certctl-* /usr/local/sbin/certctl-runc
ENV container=docker
STOPSIGNAL SIGRTMIN+3
LABEL org.certctl.offline=true org.certctl.kubernetes-version=$KUBERNETES_VERSION
DOCKERFILE
  docker build -q -t "$NODE_REPO:stage1-$node_key" "$ctx" >/dev/null
  rm -rf "$ctx"

  # Preload the component images into containerd's content store (no unpack:
  # the overlay snapshotter cannot run on this build container's overlay root;
  # containerd's CRI unpacks on first use).
  docker rm -f "$name" >/dev/null 2>&1 || true
  docker run --name "$name" --privileged --entrypoint /bin/bash \
    -v "$IMAGES_TAR:/images.tar:ro" "$NODE_REPO:stage1-$node_key" -c '
      set -euo pipefail
      containerd >/tmp/containerd.log 2>&1 & pid=$!
      for i in $(seq 100); do ctr version >/dev/null 2>&1 && break; sleep 0.2; done
      ctr -n k8s.io images import --label=io.cri-containerd.pinned=pinned --all-platforms --no-unpack --digests /images.tar >/dev/null
      ctr -n k8s.io images ls -q | grep -v "@sha256:"
      kill $pid; wait $pid || true
      rm -rf /tmp/* /run/containerd /var/log/*' >"$CERTCTL_CACHE/logs/node-preload.log" 2>&1 ||
    { docker rm -f "$name" >/dev/null; die "preloading images failed; see $CERTCTL_CACHE/logs/node-preload.log"; }
  docker commit \
    --change 'ENTRYPOINT ["/usr/local/bin/certctl-node-entrypoint"]' \
    --change 'CMD ["/sbin/init"]' \
    "$name" "$NODE_IMAGE" >/dev/null
  docker rm -f "$name" >/dev/null
  docker rmi "$NODE_REPO:stage1-$node_key" >/dev/null
}
node_key=$(hash_key "$components_key" "$(stage_key "$(go_stage kubernetes)")" "$(stage_key go-crictl)" "$node_rootfs" \
  "$NODE_DIR" "$CI_DIR/runtime/certctl-runc" "$(declare -f build_node render)")
NODE_IMAGE="$NODE_REPO:$KUBERNETES_VERSION-$node_key"
image_stage "$(k8s_stage node-image)" "$node_key" "$NODE_IMAGE" build_node

# Kubelet flags a version needs on this host (KUBELET_EXTRA_ARGS), one layer on top: read by
# kubelet.service's drop-in (EnvironmentFile=-/etc/default/kubelet).
add_kubelet_args() {
  local ctx; ctx=$(mktemp -d)
  printf 'KUBELET_EXTRA_ARGS=%s\n' "$KUBELET_EXTRA_ARGS" >"$ctx/default-kubelet"
  printf 'FROM %s\nCOPY default-kubelet /etc/default/kubelet\n' "$base_node_image" >"$ctx/Dockerfile"
  docker build -q -t "$NODE_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}
if [[ -n $KUBELET_EXTRA_ARGS ]]; then
  base_node_image=$NODE_IMAGE
  args_key=$(hash_key "$node_key" "$KUBELET_EXTRA_ARGS" "$(declare -f add_kubelet_args)")
  NODE_IMAGE="$NODE_REPO:$KUBERNETES_VERSION-$args_key"
  image_stage "$(k8s_stage node-kubelet-args)" "$args_key" "$NODE_IMAGE" add_kubelet_args
fi
echo "NODE_IMAGE=$NODE_IMAGE"
echo "NETPROBE_IMAGE=$NETPROBE_IMAGE"
