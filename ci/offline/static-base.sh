#!/usr/bin/env bash
# The base image of static Go binaries (Kubernetes components, netprobe): passwd and
# group with the usual users, CA certificates, /tmp. Content-hashed stage; prints the
# image name.
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"

build_static_base() {
  local d; d=$(mktemp -d)
  mkdir -p "$d/etc/ssl/certs" "$d/tmp" "$d/usr/local/bin"
  chmod 1777 "$d/tmp"
  printf 'root:x:0:0:root:/root:/sbin/nologin\nnobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n' >"$d/etc/passwd"
  printf 'root:x:0:\nnobody:x:65534:\nnonroot:x:65532:\n' >"$d/etc/group"
  printf 'hosts: files dns\n' >"$d/etc/nsswitch.conf"
  cp /etc/ssl/certs/ca-certificates.crt "$d/etc/ssl/certs/"
  tar -C "$d" --numeric-owner -c . | docker import \
    --change 'ENV PATH=/usr/local/bin:/usr/bin:/bin' - "$STATIC_BASE" >/dev/null
  rm -rf "$d"
}
static_key=$(hash_key "$(declare -f build_static_base)")
STATIC_BASE="certctl/static-base:$static_key"
image_stage static-base "$static_key" "$STATIC_BASE" build_static_base
echo "$STATIC_BASE"
