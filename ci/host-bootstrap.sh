#!/usr/bin/env bash
# Idempotent host bootstrap for real kind clusters on this kind of machine:
# packages, a running Docker daemon, the runc wrapper where the capability
# bounding set needs it, inotify limits and free disk. Safe to re-run.
# Runs as root, or as a user with passwordless sudo in the docker group (as on
# hosted runners). A Docker engine already installed (e.g. docker-ce) is kept:
# Debian's docker.io is installed only where there is none.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

docker_answers() { timeout 10 docker info >/dev/null 2>&1; }
# dockerd lives in sbin, which a non-root user's PATH may lack.
find_dockerd() { PATH="$PATH:/usr/sbin:/usr/local/sbin" command -v dockerd; }

APT_PACKAGES=(debootstrap iptables jq postgresql pigz zstd ca-certificates prometheus python3-prometheus-client)
# A docker CLI alone is not an engine (some images ship only the client): install the engine
# where no daemon answers and none is installed.
if ! find_dockerd >/dev/null && ! docker_answers; then APT_PACKAGES+=(docker.io); fi
# The thresholds of ci/versions.env: building the offline images cold needs more than
# running clusters (the harness's preflight checks MIN_FREE_GIB_RUN too).
if [[ ${CERTCTL_IMAGE_SOURCE:-auto} != online && ! -f $CERTCTL_CACHE/stamps/node-image ]]; then
  MIN_FREE_GIB=$MIN_FREE_GIB_BUILD DISK_FOR="building the offline images"
else
  MIN_FREE_GIB=$MIN_FREE_GIB_RUN DISK_FOR="running clusters"
fi
MIN_FREE_GIB=${CERTCTL_MIN_FREE_GIB:-$MIN_FREE_GIB}
INOTIFY_WATCHES=524288
INOTIFY_INSTANCES=512
WRAPPER=/usr/local/sbin/certctl-runc
DOCKER_LOG=/var/log/certctl-dockerd.log

install_packages() {
  local missing=() p
  for p in "${APT_PACKAGES[@]}"; do
    [[ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" == "install ok installed" ]] || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  log "installing: ${missing[*]}"
  as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

# True when CAP_SYS_RESOURCE (bit 24) is missing from our bounding set.
lacks_sys_resource() {
  local bnd; bnd=$(sed -n 's/^CapBnd:[[:space:]]*//p' /proc/self/status)
  (( ((0x$bnd >> 24) & 1) == 0 ))
}

# Where the host needs it, adds our runtime wrapper to daemon.json, keeping every
# other setting of an existing engine; returns 0 if the file changed.
configure_docker() {
  local have='{}' want
  lacks_sys_resource || return 1
  as_root install -m 0755 "$CI_DIR/runtime/certctl-runc" "$WRAPPER"
  [[ -f /etc/docker/daemon.json ]] && have=$(jq -S . /etc/docker/daemon.json)
  want=$(jq -S --arg p "$WRAPPER" '. + {"runtimes": ((.runtimes // {}) + {"certctl-runc": {"path": $p}}), "default-runtime": "certctl-runc"}' <<<"$have")
  as_root mkdir -p /etc/docker
  [[ $have == "$want" ]] && return 1
  log "writing /etc/docker/daemon.json (runc wrapper: $(lacks_sys_resource && echo yes || echo no))"
  jq . <<<"$want" | as_root tee /etc/docker/daemon.json >/dev/null
  return 0
}

# A running daemon this user cannot reach: not in the docker group (or not since login).
check_docker_access() {
  docker_answers && return 0
  [[ $(id -u) -eq 0 ]] && return 0
  as_root true
  if as_root docker info >/dev/null 2>&1; then
    die "dockerd runs but $(id -un) cannot reach it: add the user to the docker group (sudo usermod -aG docker $(id -un)) and log in again"
  fi
}

start_docker() {
  local changed=$1
  if docker_answers && [[ $changed == no ]]; then return 0; fi
  if [[ -d /run/systemd/system ]]; then
    as_root systemctl restart docker
  else
    if docker_answers; then
      # Our own earlier dockerd must pick up the new daemon.json.
      [[ -f /run/certctl-dockerd.pid ]] || die "a Docker daemon we did not start is running; restart it so it reads /etc/docker/daemon.json"
      as_root kill "$(cat /run/certctl-dockerd.pid)"
      local i; for i in $(seq 30); do docker_answers || break; sleep 1; done
    fi
    local dockerd; dockerd=$(find_dockerd) ||
      die "no dockerd on this host and no Docker daemon answers; install a Docker engine (Debian: apt-get install docker.io)"
    log "starting $dockerd (log: $DOCKER_LOG)"
    # A session of its own: the daemon must outlive the shell (and process group) that started it.
    as_root sh -c "setsid nohup $dockerd >>$DOCKER_LOG 2>&1 </dev/null & echo \$! >/run/certctl-dockerd.pid"
  fi
  local i
  for i in $(seq 60); do docker_answers && return 0; sleep 1; done
  check_docker_access
  die "dockerd did not answer within 60 s; see $DOCKER_LOG"
}

# The running daemon must use the wrapper where the host needs it (a daemon
# started earlier by someone else may not have read daemon.json).
check_runtime() {
  local rt; rt=$(docker info -f '{{.DefaultRuntime}}')
  if lacks_sys_resource && [[ $rt != certctl-runc ]]; then
    die "dockerd's default runtime is $rt, but this host lacks CAP_SYS_RESOURCE in its bounding set: privileged (kind) containers will fail. Restart dockerd so it reads /etc/docker/daemon.json"
  fi
}

check_inotify() {
  local k want cur
  for k in max_user_watches:$INOTIFY_WATCHES max_user_instances:$INOTIFY_INSTANCES; do
    want=${k#*:}; k=fs.inotify.${k%%:*}
    cur=$(sysctl -n "$k")
    if (( cur < want )); then
      as_root sysctl -qw "$k=$want" 2>/dev/null ||
        die "$k is $cur (< $want) and cannot be raised here; run: sudo sysctl -w $k=$want"
      log "raised $k from $cur to $want"
    fi
  done
}

check_disk() {
  local d free
  for d in "$CERTCTL_CACHE" /var/lib; do
    mkdir -p "$d" 2>/dev/null || true
    free=$(df -BG --output=avail "$d" | tail -1 | tr -dc 0-9)
    (( free >= MIN_FREE_GIB )) ||
      die "only ${free} GiB free on $d; $DISK_FOR needs ${MIN_FREE_GIB} GiB (ci/versions.env MIN_FREE_GIB_*). Free space (docker system prune -a; rm -rf $CERTCTL_CACHE/go/work) or set CERTCTL_CACHE elsewhere"
  done
}

t0=$(date +%s)
install_packages
check_disk
check_inotify
check_docker_access
if configure_docker; then start_docker yes; else start_docker no; fi
check_runtime
# /usr/sbin/dockerd 20.10 speaks API 1.41; a newer docker CLI earlier in PATH negotiates down.
log "host ready: docker $(docker version -f '{{.Server.Version}}') runtime=$(docker info -f '{{.DefaultRuntime}}') ($(( $(date +%s) - t0 ))s)"
