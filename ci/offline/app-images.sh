#!/usr/bin/env bash
# Offline application images: postgres (official image contract, our entrypoint)
# and the certctl server and agent built from this workspace. Tags are content
# hashes. Prints KEY=VALUE lines for images.env.
#   ci/offline/app-images.sh [postgres|prometheus|server|agent]...   (default: all four)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
export DOCKER_BUILDKIT=0
PG_MAJOR=15   # Debian bookworm's, matching the app base's suite
PG_UID=999    # the official Debian-based image's postgres uid
APP_UID=65532

app_rootfs=$(bash "$CI_DIR/offline/rootfs.sh" app)


# --- postgres ------------------------------------------------------------------
build_postgres() {
  local ctx; ctx=$(mktemp -d)
  cp "$CI_DIR/offline/postgres/entrypoint" "$ctx/"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $app_rootfs
# The uid is created first so the package keeps it.
RUN set -e; groupadd -r -g $PG_UID postgres; useradd -r -u $PG_UID -g postgres -d /var/lib/postgresql -s /bin/bash postgres; \
    apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql-$PG_MAJOR >/dev/null; \
    rm -rf /var/lib/apt/lists/* /var/lib/postgresql/$PG_MAJOR /etc/postgresql/$PG_MAJOR/main; \
    mkdir -p /var/lib/postgresql/data /var/run/postgresql /docker-entrypoint-initdb.d; \
    chown -R postgres:postgres /var/lib/postgresql /var/run/postgresql; chmod 0700 /var/lib/postgresql/data
COPY entrypoint /usr/local/bin/docker-entrypoint.sh
ENV PATH=/usr/lib/postgresql/$PG_MAJOR/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \\
    PGDATA=/var/lib/postgresql/data LANG=C.UTF-8
USER $PG_UID
EXPOSE 5432
STOPSIGNAL SIGINT
LABEL org.certctl.offline=true
ENTRYPOINT ["/usr/local/bin/docker-entrypoint.sh"]
CMD ["postgres"]
DOCKERFILE
  docker build -q -t "$POSTGRES_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

# --- prometheus --------------------------------------------------------------------
# Debian's Prometheus (static scrape configs; no Kubernetes discovery) as the real
# scraper the live tier points at the server with a ServiceMonitor's settings.
build_prometheus() {
  local ctx; ctx=$(mktemp -d)
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $app_rootfs
RUN set -e; apt-get update -qq; \
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; \
    rm -rf /var/lib/apt/lists/*; /usr/bin/prometheus --version >/dev/null
USER 65532:65532
LABEL org.certctl.offline=true
ENTRYPOINT ["/usr/bin/prometheus"]
DOCKERFILE
  docker build -q -t "$PROMETHEUS_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

# --- certctl server / agent ------------------------------------------------------
# The binaries come from `cargo build --release` on this host, linked against its glibc,
# so their base must have at least that glibc: bookworm's (2.36) serves Debian 12 and
# Ubuntu 22.04 hosts; a newer host (Ubuntu 24.04 runners: 2.39) gets the
# $NODE_DEBIAN_SUITE base. glibc-fits.sh refuses, naming both, what neither fits.
BOOKWORM_GLIBC=2.36
host_glibc() { getconf GNU_LIBC_VERSION | awk '{print $2}'; }
bin_base() {
  if [[ $(printf '%s\n%s\n' "$(host_glibc)" "$BOOKWORM_GLIBC" | sort -V | tail -n 1) == "$BOOKWORM_GLIBC" ]]; then
    echo "$app_rootfs"
  else
    bash "$CI_DIR/offline/rootfs.sh" bin
  fi
}
cargo_bin() {
  local target="${CARGO_TARGET_DIR:-$REPO_DIR/target}" bin=$1
  (cd "$REPO_DIR" && nice -n 10 cargo build --release -q -p "$bin" --bin "$bin") >&2 ||
    die "cargo build --release -p $bin failed (see above); the $bin image needs it"
  echo "$target/release/$bin"
}

# build_app NAME: image holding /usr/local/bin/certctl-NAME as entrypoint.
build_app() {
  local name=$1 ctx base_glibc; ctx=$(mktemp -d)
  base_glibc=$(docker run --rm --entrypoint getconf "$BIN_ROOTFS" GNU_LIBC_VERSION | awk '{print $2}')
  bash "$CI_DIR/offline/glibc-fits.sh" "$APP_BIN" "$base_glibc" "$BIN_ROOTFS" >&2 || { rm -rf "$ctx"; exit 1; }
  cp "$APP_BIN" "$ctx/bin"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $BIN_ROOTFS
COPY bin /usr/local/bin/certctl-$name
USER $APP_UID:$APP_UID
LABEL org.certctl.offline=true
ENTRYPOINT ["/usr/local/bin/certctl-$name"]
DOCKERFILE
  docker build -q -t "$APP_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

[[ $# -gt 0 ]] || set -- postgres prometheus server agent
for what in "$@"; do
  case $what in
    postgres)
      key=$(hash_key "$app_rootfs" "$PG_MAJOR" "$PG_UID" "$CI_DIR/offline/postgres" "$(declare -f build_postgres)")
      POSTGRES_IMAGE="certctl/postgres:$PG_MAJOR-$key"
      image_stage image-postgres "$key" "$POSTGRES_IMAGE" build_postgres
      echo "POSTGRES_IMAGE=$POSTGRES_IMAGE" ;;
    prometheus)
      key=$(hash_key "$app_rootfs" "$(declare -f build_prometheus)")
      PROMETHEUS_IMAGE="certctl/prometheus:$key"
      image_stage image-prometheus "$key" "$PROMETHEUS_IMAGE" build_prometheus
      echo "PROMETHEUS_IMAGE=$PROMETHEUS_IMAGE" ;;
    server|agent)
      APP_BIN=$(cargo_bin "certctl-$what")
      BIN_ROOTFS=${BIN_ROOTFS:-$(bin_base)}
      key=$(hash_key "$BIN_ROOTFS" "$APP_BIN" "$(declare -f build_app)")
      APP_IMAGE="certctl/$what:$key"
      image_stage "image-$what" "$key" "$APP_IMAGE" build_app "$what"
      echo "${what^^}_IMAGE=$APP_IMAGE" ;;
    *) die "unknown app image: $what (want postgres, prometheus, server or agent)" ;;
  esac
done
