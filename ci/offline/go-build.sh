#!/usr/bin/env bash
# Build the Go programs the offline node image needs, one at a time, niced,
# cached under $CERTCTL_CACHE/go/<name>/<version>/ and skipped when unchanged.
#   usage: ci/offline/go-build.sh [kubernetes|etcd|coredns|kube-router|pause|kind|all]...
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SELF="$CI_DIR/offline/go-build.sh"
GO_OUT="$CERTCTL_CACHE/go"
WORK="$CERTCTL_CACHE/go/work"

# mod_json MODULE@VERSION: `go mod download -json` for one module (into GOMODCACHE).
mod_json() { (cd /tmp && GOFLAGS=-mod=mod go mod download -json "$1"); }
mod_field() { sed -n "s/^\t\"$2\": \"\(.*\)\",\?$/\1/p" <<<"$1" | head -1; }

# new_wrapper DIR MODULE: fresh wrapper module directory with a go.mod header.
new_wrapper() {
  rm -rf "$1"; mkdir -p "$1"
  printf 'module %s\n\ngo 1.24.0\n\n' "$2" >"$1/go.mod"
}

# finish OUT_TMP OUT: atomically move a finished build into place.
finish() { rm -rf "$2"; mv "$1" "$2"; }

# --- Kubernetes server binaries + kubectl -----------------------------------
# k8s.io/kubernetes replaces its staging modules with ./staging, so it cannot be
# `go install`ed; a wrapper module requires it and points every staging module at
# the published v0.<minor>.<patch> tag instead.
k8s_cmds=(kubeadm kubelet kubectl kube-apiserver kube-controller-manager kube-scheduler kube-proxy)
build_kubernetes() {
  local v=$KUBERNETES_VERSION out="$GO_OUT/kubernetes/$KUBERNETES_VERSION"
  local w="$WORK/kubernetes" json gomod staging_v="v0.${KUBERNETES_VERSION#v1.}"
  json=$(mod_json "k8s.io/kubernetes@$v")
  gomod=$(mod_field "$json" GoMod)
  new_wrapper "$w" certctl.local/kubernetes-build
  printf 'require k8s.io/kubernetes %s\n\nreplace (\n' "$v" >>"$w/go.mod"
  grep -oE '^[[:space:]]*k8s\.io/[A-Za-z0-9._-]+ => \./staging/' "$gomod" | awk '{print $1}' | sort -u |
    while read -r m; do printf '\t%s => %s %s\n' "$m" "$m" "$staging_v"; done >>"$w/go.mod"
  printf ')\n' >>"$w/go.mod"
  local major=${v#v}; major=${major%%.*}
  local minor=${v#v*.}; minor=${minor%%.*}
  local date; date=$(mod_field "$(cd /tmp && GOFLAGS=-mod=mod go list -m -json "k8s.io/kubernetes@$v")" Time)
  local ld="-s -w" p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor"
    ld+=" -X $p.gitCommit=0000000000000000000000000000000000000000 -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  local pkgs=() c
  for c in "${k8s_cmds[@]}"; do pkgs+=("k8s.io/kubernetes/cmd/$c"); done
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  (cd "$w" && go_nice build -trimpath -ldflags "$ld" -o "$out.tmp/" "${pkgs[@]}")
  "$out.tmp/kubeadm" version -o short | grep -qx "$v" || die "kubeadm reports $("$out.tmp/kubeadm" version -o short), want $v"
  finish "$out.tmp" "$out"
}

build_one() {
  local name=$1 ver key
  case $name in
    kubernetes) ver=$KUBERNETES_VERSION ;;
    *) die "unknown Go component: $name" ;;
  esac
  key=$(hash_key "$name" "$ver" "$SELF" "$CI_DIR/lib.sh")
  # The stamp alone is not trusted if the output went missing.
  [[ -d "$GO_OUT/$name/$ver" ]] || rm -f "$CERTCTL_CACHE/stamps/go-$name"
  stage "go-$name" "$key" "build_${name//-/_}"
}

[[ $# -gt 0 ]] || set -- all
for n in "$@"; do
  if [[ $n == all ]]; then for m in kubernetes; do build_one "$m"; done
  else build_one "$n"; fi
done
