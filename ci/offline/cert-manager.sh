#!/usr/bin/env bash
# cert-manager for offline clusters: our controller main (ci/offline/cert-manager/*.go)
# over the cert-manager module at $CERT_MANAGER_VERSION, an image of it on the app
# rootfs, the cert-manager.io CRDs from the module zip, and our manifests with the
# image filled in. Every stage is content-hashed and skipped when unchanged.
#   bash ci/offline/cert-manager.sh      prints (stdout, KEY=VALUE):
#     CERT_MANAGER_IMAGE=certctl/cert-manager-controller:<hash>
#     CERT_MANAGER_CRDS=<dir of the four cert-manager.io CRDs>   (kubectl apply --server-side -f)
#     CERT_MANAGER_MANIFESTS=<file: namespace, RBAC, Deployment>  (kubectl apply -f, after the CRDs)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
export DOCKER_BUILDKIT=0
MODULE=github.com/cert-manager/cert-manager
SRC="$CI_DIR/offline/cert-manager"
BIN_DIR="$CERTCTL_CACHE/go/cert-manager/$CERT_MANAGER_VERSION"
BIN="$BIN_DIR/cert-manager-controller"
WORK="$CERTCTL_CACHE/go/work/cert-manager"
OUT="$CERTCTL_CACHE/cert-manager/$CERT_MANAGER_VERSION"
APP_UID=65532
# Only these are watched; the acme.cert-manager.io CRDs are not needed (no ACME loops).
CRD_FILES=(certificates certificaterequests issuers clusterissuers)

# module_dir: the cert-manager module zip's directory in GOMODCACHE (downloaded if needed);
# also sets module_commit to the tag's commit, for the version the binary reports.
module_dir() {
  local info
  (cd /tmp && GOFLAGS=-mod=mod go mod download "$MODULE@$CERT_MANAGER_VERSION") ||
    die "go mod download $MODULE@$CERT_MANAGER_VERSION failed (is the Go module proxy reachable?)"
  info=$(cd /tmp && GOFLAGS=-mod=mod go list -m -f '{{.Dir}} {{with .Origin}}{{.Hash}}{{end}}' "$MODULE@$CERT_MANAGER_VERSION")
  module_path=${info%% *} module_commit=${info#* }
  [[ -d $module_path ]] || die "no module directory for $MODULE@$CERT_MANAGER_VERSION (go list said: $info)"
}

# The wrapper module's path sits under $MODULE, so our main may use the module's
# internal/ packages; it is built in a copy so the pin in versions.env wins.
build_controller() {
  local module_path module_commit v=$CERT_MANAGER_VERSION
  module_dir
  rm -rf "$WORK"; mkdir -p "$WORK"
  cp "$SRC"/go.mod "$SRC"/go.sum "$SRC"/*.go "$WORK/"
  (cd "$WORK" && go mod edit -require="$MODULE@$v")
  rm -rf "$BIN_DIR.tmp"; mkdir -p "$BIN_DIR.tmp"
  local ld="-s -w -X $MODULE/pkg/util.AppVersion=$v -X $MODULE/pkg/util.AppGitCommit=$module_commit -X $MODULE/pkg/util.AppGitState=clean"
  (cd "$WORK" && go_nice build -trimpath -ldflags "$ld" -o "$BIN_DIR.tmp/cert-manager-controller" .)
  local reported; reported=$("$BIN_DIR.tmp/cert-manager-controller" --version)
  [[ $reported == "cert-manager-controller $v "* ]] || die "the built controller reports '$reported', want $v"
  rm -rf "$BIN_DIR"; mv "$BIN_DIR.tmp" "$BIN_DIR"
}

build_image() {
  local ctx; ctx=$(mktemp -d)
  cp "$BIN" "$ctx/cert-manager-controller"
  cat >"$ctx/Dockerfile" <<DOCKERFILE
FROM $app_rootfs
COPY cert-manager-controller /usr/local/bin/cert-manager-controller
USER $APP_UID:$APP_UID
LABEL org.certctl.offline=true org.certctl.cert-manager-version=$CERT_MANAGER_VERSION
ENTRYPOINT ["/usr/local/bin/cert-manager-controller"]
DOCKERFILE
  docker build -q -t "$IMAGE" "$ctx" >/dev/null
  rm -rf "$ctx"
}

# copy_crds: the cert-manager.io CRDs, plain YAML in the module zip (not committed here).
copy_crds() {
  local module_path module_commit f
  module_dir
  rm -rf "$OUT/crds.tmp"; mkdir -p "$OUT/crds.tmp"
  for f in "${CRD_FILES[@]}"; do
    cp "$module_path/deploy/crds/cert-manager.io_$f.yaml" "$OUT/crds.tmp/" ||
      die "deploy/crds/cert-manager.io_$f.yaml missing from $MODULE@$CERT_MANAGER_VERSION"
  done
  rm -rf "$OUT/crds"; mv "$OUT/crds.tmp" "$OUT/crds"
}

go_files=("$SRC"/go.mod "$SRC"/go.sum "$SRC"/*.go)
key=$(hash_key cert-manager "$CERT_MANAGER_VERSION" "$(declare -f module_dir build_controller go_nice)" "${go_files[@]}")
[[ -x $BIN ]] || rm -f "$CERTCTL_CACHE/stamps/go-cert-manager"
stage go-cert-manager "$key" build_controller

app_rootfs=$(bash "$CI_DIR/offline/rootfs.sh" app)
key=$(hash_key "$app_rootfs" "$BIN" "$APP_UID" "$(declare -f build_image)")
IMAGE="certctl/cert-manager-controller:$key"
image_stage image-cert-manager "$key" "$IMAGE" build_image

key=$(hash_key "$CERT_MANAGER_VERSION" "${CRD_FILES[*]}" "$(declare -f module_dir copy_crds)")
[[ -d $OUT/crds ]] || rm -f "$CERTCTL_CACHE/stamps/cert-manager-crds"
stage cert-manager-crds "$key" copy_crds

# Manifests: ours, in name order, with the image filled in (cheap: always rewritten).
mkdir -p "$OUT"
manifests="$OUT/manifests.yaml"
for f in "$SRC"/manifests/*.yaml; do
  printf -- '---\n# from ci/offline/cert-manager/manifests/%s\n' "$(basename "$f")"
  sed "s|image: CERT_MANAGER_IMAGE\$|image: $IMAGE|" "$f"
done >"$manifests.tmp"
grep -q "image: $IMAGE\$" "$manifests.tmp" || die "no 'image: CERT_MANAGER_IMAGE' line to fill in under $SRC/manifests"
mv "$manifests.tmp" "$manifests"

echo "CERT_MANAGER_IMAGE=$IMAGE"
echo "CERT_MANAGER_CRDS=$OUT/crds"
echo "CERT_MANAGER_MANIFESTS=$manifests"
