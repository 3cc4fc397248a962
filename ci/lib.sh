# Shared helpers for ci/*.sh. Source it; it sets `set -euo pipefail`.
# Stages are content-hashed: a stage runs only when its key (hash of its inputs)
# differs from the stamp left by its last successful run.
set -euo pipefail

CI_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
REPO_DIR="$(cd "$CI_DIR/.." && pwd)"
export CERTCTL_CACHE="${CERTCTL_CACHE:-$HOME/.cache/certctl-proof}"
# shellcheck source=versions.env
source "$CI_DIR/versions.env"
KUBERNETES_DEFAULT_VERSION=$KUBERNETES_VERSION
KUBELET_EXTRA_ARGS=""

# CERTCTL_KUBERNETES=<version> selects one of KUBERNETES_OTHER_VERSIONS: its K8S_<version>_<KEY>
# pins replace KEY (harness/src/tools.rs applies the same rule to the same file).
select_kubernetes() {
  local want=${CERTCTL_KUBERNETES:-} prefix var
  [[ -n $want && $want != "$KUBERNETES_DEFAULT_VERSION" ]] || return 0
  [[ " $KUBERNETES_OTHER_VERSIONS " == *" $want "* ]] ||
    { printf 'ERROR: CERTCTL_KUBERNETES=%s is not pinned; ci/versions.env offers %s (default) %s\n' \
      "$want" "$KUBERNETES_DEFAULT_VERSION" "$KUBERNETES_OTHER_VERSIONS" >&2; exit 1; }
  prefix="K8S_$(tr 'a-z.' 'A-Z_' <<<"$want")_"
  KUBERNETES_VERSION=$want
  # The upstream node image is pinned for the default version only.
  KIND_NODE_IMAGE=""
  for var in $(compgen -v "$prefix"); do printf -v "${var#"$prefix"}" '%s' "${!var}"; done
}
select_kubernetes
# The image set ci/offline/ensure.sh writes: a selected version has its own, so runs of
# different versions never overwrite each other's (harness/src/images.rs reads the same name).
IMAGES_ENV="$CERTCTL_CACHE/images${CERTCTL_KUBERNETES:+-$CERTCTL_KUBERNETES}.env"
# sbin too: minimal shells (cron, env -i) leave out where sysctl, ip and iptables live.
export PATH="/usr/local/go/bin:$PATH:/usr/local/sbin:/usr/sbin:/sbin"
mkdir -p "$CERTCTL_CACHE/stamps" "$CERTCTL_CACHE/logs"

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" >&2; }
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

# as_root CMD...: CMD as root — directly when we are, else through passwordless sudo
# (hosted runners: a non-root user with sudo and the docker group).
as_root() {
  if [[ $(id -u) -eq 0 ]]; then "$@"; return; fi
  sudo -n true 2>/dev/null || die "$(id -un) is not root and has no passwordless sudo, which '$*' needs; run as root or grant it (e.g. '$(id -un) ALL=(ALL) NOPASSWD:ALL' in /etc/sudoers.d/)"
  sudo -n "$@"
}

# hash_key ARG...: sha256 over the given strings; absolute paths of existing
# files or directories contribute their contents (sorted, with relative paths).
hash_key() {
  local a
  for a in "$@"; do
    if [[ $a == /* && -d $a ]]; then
      (cd "$a" && find . -type f -print0 | LC_ALL=C sort -z | xargs -0 -r sha256sum)
    elif [[ $a == /* && -f $a ]]; then
      printf 'file %s\n' "$(basename "$a")"; sha256sum <"$a"
    else
      printf 'str %s\n' "$a"
    fi
  done | sha256sum | cut -c1-16
}

# stage NAME KEY CMD...: run CMD unless stamps/NAME holds KEY. Prints one line
# "stage NAME: built|skipped (Ns)" and appends it to $CERTCTL_CACHE/timings.log.
stage() {
  local name=$1 key=$2; shift 2
  local stamp="$CERTCTL_CACHE/stamps/$name" t0 t1 verdict
  t0=$(date +%s)
  if [[ -f $stamp && "$(cat "$stamp")" == "$key" ]]; then
    verdict=skipped
  else
    log "stage $name: building (key $key)"
    "$@"
    printf '%s\n' "$key" >"$stamp"
    verdict=built
  fi
  t1=$(date +%s)
  printf 'stage %-22s %-7s %4ss  key=%s\n' "$name:" "$verdict" "$((t1 - t0))" "$key" | tee -a "$CERTCTL_CACHE/timings.log" >&2
}

# image_stage NAME KEY IMAGE CMD...: stage() that also reruns when IMAGE is gone
# from the Docker daemon (e.g. after `docker system prune`).
image_stage() {
  local name=$1 key=$2 image=$3; shift 3
  docker image inspect "$image" >/dev/null 2>&1 || rm -f "$CERTCTL_CACHE/stamps/$name"
  stage "$name" "$key" "$@"
}

# k8s_stage NAME: the stage name of a stage that follows the Kubernetes version. A selected
# other version keeps its own stamps, so switching versions back and forth rebuilds nothing.
k8s_stage() {
  if [[ $KUBERNETES_VERSION == "$KUBERNETES_DEFAULT_VERSION" ]]; then echo "$1"; else echo "$1@$KUBERNETES_VERSION"; fi
}

# go_stage COMPONENT: the stage name of one ci/offline/go-build.sh component.
go_stage() {
  case $1 in
    kubernetes | etcd | coredns | pause) k8s_stage "go-$1" ;;
    *) echo "go-$1" ;;
  esac
}

# stage_key NAME: the key recorded by the last successful run of stage NAME.
stage_key() { cat "$CERTCTL_CACHE/stamps/$1"; }

# Go builds share the machine with others: low priority, bounded parallelism.
go_nice() { nice -n 10 env GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 go "$@"; }
