#!/usr/bin/env bash
# One entry point for cluster images: bootstraps the host, builds or reuses
# every image (each stage content-hashed, skipped when unchanged) and writes
# $CERTCTL_CACHE/images.env for the harness.
#   ci/offline/ensure.sh [node] [apps]        (default: both)
# CERTCTL_IMAGE_SOURCE=offline|online|auto (default auto): auto picks online only
# when the pinned upstream node image ($KIND_NODE_IMAGE) is already present
# locally; no network is probed to decide.
# CERTCTL_KUBERNETES=<version> builds the node image of another pinned Kubernetes
# version (ci/versions.env, KUBERNETES_OTHER_VERSIONS); each keeps its own stamps.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
OWNED_KEYS=(IMAGE_SOURCE NODE_IMAGE NETPROBE_IMAGE POSTGRES_IMAGE PROMETHEUS_IMAGE SERVER_IMAGE AGENT_IMAGE KUBERNETES_VERSION
  CERT_MANAGER_IMAGE CERT_MANAGER_CRDS CERT_MANAGER_MANIFESTS)

want_node=0 want_apps=0
[[ $# -gt 0 ]] || set -- node apps
for a in "$@"; do
  case $a in node) want_node=1 ;; apps) want_apps=1 ;; *) die "unknown target: $a (want node or apps)" ;; esac
done

t_start=$(date +%s)
printf -- '--- %s ensure %s\n' "$(date -u +%FT%TZ)" "$*" >>"$CERTCTL_CACHE/timings.log"
stage_t0=$(date +%s)
bash "$CI_DIR/host-bootstrap.sh"
printf 'stage %-22s %-7s %4ss\n' "host-bootstrap:" done "$(( $(date +%s) - stage_t0 ))" | tee -a "$CERTCTL_CACHE/timings.log" >&2

source_mode=${CERTCTL_IMAGE_SOURCE:-auto}
case $source_mode in
  offline|online) ;;
  auto) if docker image inspect "$KIND_NODE_IMAGE" >/dev/null 2>&1; then source_mode=online; else source_mode=offline; fi ;;
  *) die "CERTCTL_IMAGE_SOURCE=$source_mode; want offline, online or auto" ;;
esac
log "image source: $source_mode"

rootfs_pid=""
if [[ $source_mode == offline ]]; then
  # Root filesystems are network- and disk-bound: debootstrap them while the Go
  # build below compiles (a cold run saves their whole duration).
  rootfs_log="$CERTCTL_CACHE/logs/rootfs-background.log"
  : >"$rootfs_log"
  ( for f in node net app; do bash "$CI_DIR/offline/rootfs.sh" "$f" >/dev/null || exit 1; done ) 2>>"$rootfs_log" &
  rootfs_pid=$!
  # The Kubernetes build also yields kubectl at the pinned version: seed the tools
  # cache with it so ci/tools.sh finds it there instead of building it again.
  bash "$CI_DIR/offline/go-build.sh" kubernetes
  kubectl_dir="$CERTCTL_CACHE/tools/kubectl/$KUBERNETES_VERSION"
  if [[ ! -x $kubectl_dir/kubectl ]]; then
    mkdir -p "$kubectl_dir"
    cp "$CERTCTL_CACHE/go/kubernetes/$KUBERNETES_VERSION/kubectl" "$kubectl_dir/kubectl"
  fi
fi
# Pinned kind and kubectl: ci/tools.sh owns the tools.
bash "$CI_DIR/tools.sh" kind kubectl >&2

if [[ -n $rootfs_pid ]]; then
  wait "$rootfs_pid" || log "background rootfs build failed (see $rootfs_log); the stages below retry it"
  cat "$rootfs_log" >&2
fi

declare -A out=([IMAGE_SOURCE]=$source_mode)
# Keys this run decides (possibly as empty), so old values are not carried over.
declare -A decided=([IMAGE_SOURCE]=1)
if (( want_node )); then
  decided[NODE_IMAGE]=1 decided[NETPROBE_IMAGE]=1 decided[KUBERNETES_VERSION]=1
  out[KUBERNETES_VERSION]=$KUBERNETES_VERSION
  if [[ $source_mode == offline ]]; then
    lines=$(bash "$CI_DIR/offline/node-image.sh")
    while IFS='=' read -r k v; do out[$k]=$v; done <<<"$lines"
  else
    [[ -n $KIND_NODE_IMAGE ]] || die "CERTCTL_IMAGE_SOURCE=online: no upstream node image is pinned for Kubernetes \
$KUBERNETES_VERSION (only for the default $KUBERNETES_DEFAULT_VERSION); build it offline (CERTCTL_IMAGE_SOURCE=offline)"
    out[NODE_IMAGE]=$KIND_NODE_IMAGE
    out[KUBERNETES_VERSION]=$(sed -n 's/^kindest\/node:\(v[0-9.]*\)@.*/\1/p' <<<"$KIND_NODE_IMAGE")
    # The smoke test and the live probes need our netprobe; upstream nodes lack it.
    lines=$(bash "$CI_DIR/offline/netprobe-image.sh")
    while IFS='=' read -r k v; do out[$k]=$v; done <<<"$lines"
  fi
fi
if (( want_apps )); then
  decided[POSTGRES_IMAGE]=1 decided[PROMETHEUS_IMAGE]=1 decided[SERVER_IMAGE]=1 decided[AGENT_IMAGE]=1
  apps=(server agent)
  if [[ $source_mode == offline ]]; then
    apps=(postgres prometheus "${apps[@]}")
  else
    out[POSTGRES_IMAGE]=$POSTGRES_ONLINE_IMAGE out[PROMETHEUS_IMAGE]=$PROMETHEUS_ONLINE_IMAGE
  fi
  lines=$(bash "$CI_DIR/offline/app-images.sh" "${apps[@]}")
  while IFS='=' read -r k v; do out[$k]=$v; done <<<"$lines"
  # cert-manager: offline, our controller build; online, the live tier installs the
  # official chart at $CERT_MANAGER_VERSION (so the keys stay empty).
  decided[CERT_MANAGER_IMAGE]=1 decided[CERT_MANAGER_CRDS]=1 decided[CERT_MANAGER_MANIFESTS]=1
  if [[ $source_mode == offline ]]; then
    lines=$(bash "$CI_DIR/offline/cert-manager.sh")
    while IFS='=' read -r k v; do out[$k]=$v; done <<<"$lines"
  fi
fi

# Targets not built this run keep their previous values; keys other scripts
# own are kept as they are.
if [[ -f $IMAGES_ENV ]]; then
  for k in "${OWNED_KEYS[@]}"; do
    if [[ -z ${decided[$k]:-} ]]; then
      v=$(sed -n "s/^$k=//p" "$IMAGES_ENV" | tail -1)
      if [[ -n $v ]]; then out[$k]=$v; fi
    fi
  done
fi
tmp="$IMAGES_ENV.tmp"
{
  echo "# written by ci/offline/ensure.sh $(date -u +%FT%TZ)"
  if [[ -f $IMAGES_ENV ]]; then
    grep -E '^[A-Z_]+=' "$IMAGES_ENV" | grep -vE "^($(IFS='|'; echo "${OWNED_KEYS[*]}"))=" || true
  fi
  for k in "${OWNED_KEYS[@]}"; do if [[ -n ${out[$k]:-} ]]; then echo "$k=${out[$k]}"; fi; done
} >"$tmp"
mv "$tmp" "$IMAGES_ENV"
log "wrote $IMAGES_ENV ($(( $(date +%s) - t_start ))s total)"
cat "$IMAGES_ENV"
