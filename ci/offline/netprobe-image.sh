#!/usr/bin/env bash
# Our network probe (ci/offline/netprobe) as an image of its own, for the online path:
# kind's upstream node image does not carry it (the offline node image preloads the
# same image, same name). Content-hashed stage; prints NETPROBE_IMAGE=...
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
export DOCKER_BUILDKIT=0
NETPROBE_VERSION=$(hash_key "$CI_DIR/offline/netprobe")
NETPROBE_IMAGE="certctl.local/netprobe:$NETPROBE_VERSION"
BINARY="$CERTCTL_CACHE/go/netprobe/$NETPROBE_VERSION/netprobe"

bash "$CI_DIR/offline/go-build.sh" netprobe
STATIC_BASE=$(bash "$CI_DIR/offline/static-base.sh")

build_netprobe_image() {
  local ctx; ctx=$(mktemp -d)
  cp "$BINARY" "$ctx/netprobe"
  printf 'FROM %s\nCOPY netprobe /usr/local/bin/netprobe\nENTRYPOINT ["/usr/local/bin/netprobe"]\n' "$STATIC_BASE" >"$ctx/Dockerfile"
  docker build -q -t "$NETPROBE_IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}
image_stage netprobe-image "$(hash_key "$NETPROBE_VERSION" "$STATIC_BASE" "$(declare -f build_netprobe_image)")" \
  "$NETPROBE_IMAGE" build_netprobe_image
echo "NETPROBE_IMAGE=$NETPROBE_IMAGE"
