#!/usr/bin/env bash
# Base root filesystems from debootstrap, imported as Docker images.
#   ci/offline/rootfs.sh node|net|app|bin     prints the image reference it ensured
#   node: Debian $NODE_DEBIAN_SUITE with what a kind node needs (systemd, containerd, runc, CNI plugins, netfilter tools)
#   net:  Debian $NODE_DEBIAN_SUITE minbase with netfilter tools (kube-proxy, kube-router)
#   app:  Debian bookworm minbase (postgres, Prometheus; certctl binaries built on a host
#         whose glibc is at most bookworm's)
#   bin:  Debian $NODE_DEBIAN_SUITE minbase, for certctl binaries built on a newer glibc
#         (Ubuntu 24.04 runners); see app-images.sh
# debootstrap writes root-owned trees: those steps run as root (sudo for a non-root user).
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SELF="$CI_DIR/offline/rootfs.sh"
MIRROR=${CERTCTL_DEBIAN_MIRROR:-http://deb.debian.org/debian}

NET_PKGS=iptables,ipset,conntrack,iproute2,kmod,nftables,procps,ca-certificates
NODE_PKGS=$NET_PKGS,systemd,systemd-sysv,dbus,containerd,runc,ethtool,util-linux,mount,libseccomp2,pigz,bash,curl,jq,containernetworking-plugins,socat,e2fsprogs,findutils,less,iputils-ping
APP_PKGS=ca-certificates,tzdata,libpq5

flavour=${1:?usage: rootfs.sh node|net|app}
case $flavour in
  node) suite=$NODE_DEBIAN_SUITE pkgs=$NODE_PKGS ;;
  net)  suite=$NODE_DEBIAN_SUITE pkgs=$NET_PKGS ;;
  app)  suite=bookworm pkgs=$APP_PKGS ;;
  bin)  suite=$NODE_DEBIAN_SUITE pkgs=$APP_PKGS ;;
  *) die "unknown rootfs flavour: $flavour (want node, net, app or bin)" ;;
esac
key=$(hash_key "$flavour" "$suite" "$pkgs" "$MIRROR" "$SELF")
image="certctl/rootfs-$flavour:$key"

build_rootfs() {
  local dir="$CERTCTL_CACHE/rootfs/$flavour" cache="$CERTCTL_CACHE/debootstrap-cache/$suite"
  mkdir -p "$cache"
  as_root rm -rf "$dir"; mkdir -p "$dir"
  as_root nice -n 10 debootstrap --variant=minbase --cache-dir="$cache" --include="$pkgs" "$suite" "$dir" "$MIRROR" \
    >"$CERTCTL_CACHE/logs/debootstrap-$flavour.log" 2>&1 ||
    die "debootstrap $suite failed; see $CERTCTL_CACHE/logs/debootstrap-$flavour.log"
  # Trim what no container needs; keep dpkg state so images can still apt-get.
  as_root rm -rf "$dir"/var/cache/apt/archives/*.deb "$dir"/var/lib/apt/lists/* "$dir"/usr/share/doc/* \
         "$dir"/usr/share/man/* "$dir"/usr/share/locale/* "$dir"/tmp/* "$dir"/var/log/*
  printf 'deb %s %s main\n' "$MIRROR" "$suite" | as_root tee "$dir/etc/apt/sources.list" >/dev/null
  as_root tar -C "$dir" --numeric-owner --xattrs -c . |
    docker import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
      --change 'CMD ["/bin/bash"]' - "$image" >/dev/null
  as_root rm -rf "$dir"
}

mkdir -p "$CERTCTL_CACHE/logs"
docker image inspect "$image" >/dev/null 2>&1 || rm -f "$CERTCTL_CACHE/stamps/rootfs-$flavour"
stage "rootfs-$flavour" "$key" build_rootfs
echo "$image"
