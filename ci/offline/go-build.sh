#!/usr/bin/env bash
# Build the Go programs the offline node image needs, one at a time, niced,
# cached under $CERTCTL_CACHE/go/<name>/<version>/ and skipped when unchanged.
#   usage: ci/offline/go-build.sh [kubernetes|etcd|coredns|kube-router|crictl|pause|netprobe|all]...
#          (kind, helm and kubectl are built by ci/tools.sh)
#          ci/offline/go-build.sh key NAME     (print the stage key of NAME)
source "$(dirname "${BASH_SOURCE[0]}")/../lib.sh"
SELF="$CI_DIR/offline/go-build.sh"
GO_OUT="$CERTCTL_CACHE/go"
NETPROBE_VERSION=$(hash_key "$CI_DIR/offline/netprobe")
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
  # Captured, not piped into grep -q: under pipefail an early grep exit fails the pipe with SIGPIPE.
  local reported; reported=$("$out.tmp/kubeadm" version -o short)
  [[ $reported == "$v" ]] || die "kubeadm reports $reported, want $v"
  finish "$out.tmp" "$out"
}

# --- etcd --------------------------------------------------------------------
# Its main package replaces sibling modules with ../ paths; a wrapper module
# requiring it (replaces in dependencies are ignored) builds it as published.
build_etcd() {
  local out="$GO_OUT/etcd/$ETCD_VERSION" w="$WORK/etcd"
  new_wrapper "$w" certctl.local/etcd-build
  printf 'require go.etcd.io/etcd/server/v3 %s\n' "$ETCD_VERSION" >>"$w/go.mod"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  (cd "$w" && go_nice build -trimpath -ldflags "-s -w" -o "$out.tmp/etcd" go.etcd.io/etcd/server/v3)
  local reported; reported=$("$out.tmp/etcd" --version)
  grep -qx "etcd Version: ${ETCD_VERSION#v}" <<<"$reported" || die "etcd reports the wrong version: $reported"
  finish "$out.tmp" "$out"
}

# go_install OUT PKG@VERSION [LDFLAGS]: `go install` into OUT (for modules without replaces).
go_install() {
  local out=$1 pkg=$2 ld=${3:-}
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  (cd /tmp && GOBIN="$out.tmp" go_nice install -trimpath -ldflags "-s -w $ld" "$pkg")
  finish "$out.tmp" "$out"
}

# CoreDNS through our own main (ci/offline/coredns) linking only the plugins a
# kubeadm Corefile uses: the upstream main's cloud SDKs tripled the cold build.
build_coredns() {
  local out="$GO_OUT/coredns/$COREDNS_VERSION" w="$WORK/coredns"
  new_wrapper "$w" certctl.local/coredns-build
  printf 'require github.com/coredns/coredns %s\n' "$COREDNS_VERSION" >>"$w/go.mod"
  cp "$CI_DIR/offline/coredns/main.go" "$w/"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  (cd "$w" && go_nice build -trimpath -ldflags "-s -w" -o "$out.tmp/coredns" .)
  local plugins; plugins=$("$out.tmp/coredns" -plugins)
  grep -qxE '[[:space:]]*kubernetes' <<<"$plugins" || die "coredns was built without its kubernetes plugin: $plugins"
  finish "$out.tmp" "$out"
}

# kube-router pins a netlink pseudo-version the module proxy does not serve; a
# wrapper module replaces it with the nearest served release.
build_kube_router() {
  local out="$GO_OUT/kube-router/$KUBE_ROUTER_VERSION" w="$WORK/kube-router"
  local m=github.com/cloudnativelabs/kube-router/v2
  new_wrapper "$w" certctl.local/kube-router-build
  printf 'require %s %s\n\nreplace github.com/vishvananda/netlink => github.com/vishvananda/netlink %s\n' \
    "$m" "$KUBE_ROUTER_VERSION" "$KUBE_ROUTER_NETLINK_VERSION" >>"$w/go.mod"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  (cd "$w" && go_nice build -trimpath -ldflags "-s -w -X $m/pkg/version.Version=$KUBE_ROUTER_VERSION" \
    -o "$out.tmp/kube-router" "$m/cmd/kube-router")
  finish "$out.tmp" "$out"
}

# crictl: kind's `load docker-image` uses it inside nodes.
build_crictl() {
  go_install "$GO_OUT/crictl/$CRICTL_VERSION" "sigs.k8s.io/cri-tools/cmd/crictl@$CRICTL_VERSION" \
    "-X sigs.k8s.io/cri-tools/pkg/version.Version=$CRICTL_VERSION"
}

# Our own sandbox program (ci/offline/pause).
build_pause() {
  local out="$GO_OUT/pause/$PAUSE_VERSION"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  (cd "$CI_DIR/offline/pause" && go_nice build -trimpath -ldflags "-s -w" -o "$out.tmp/pause" .)
  finish "$out.tmp" "$out"
}

# Our own network test tool (ci/offline/netprobe), keyed by its source.
build_netprobe() {
  local out="$GO_OUT/netprobe/$NETPROBE_VERSION"
  rm -rf "$out.tmp"; mkdir -p "$out.tmp"
  (cd "$CI_DIR/offline/netprobe" && go_nice build -trimpath -ldflags "-s -w" -o "$out.tmp/netprobe" .)
  finish "$out.tmp" "$out"
}

# component_key NAME: sets ver, dir and key for one component.
component_key() {
  local name=$1 extra=""
  case $name in
    kubernetes) ver=$KUBERNETES_VERSION extra="${k8s_cmds[*]}" ;;
    etcd) ver=$ETCD_VERSION ;;
    coredns) ver=$COREDNS_VERSION extra="$CI_DIR/offline/coredns" ;;
    kube-router) ver=$KUBE_ROUTER_VERSION extra=$KUBE_ROUTER_NETLINK_VERSION ;;
    pause) ver=$PAUSE_VERSION extra="$CI_DIR/offline/pause" ;;
    netprobe) ver=$NETPROBE_VERSION extra="$CI_DIR/offline/netprobe" ;;
    crictl) ver=$CRICTL_VERSION ;;
    *) die "unknown Go component: $name" ;;
  esac
  dir="$GO_OUT/$name/$ver"
  # Each component's key covers its own build function only, so editing one
  # build does not invalidate the others.
  key=$(hash_key "$name" "$ver" "$(declare -f "build_${name//-/_}" go_nice go_install new_wrapper)" $extra)
}

build_one() {
  local name=$1 ver dir key st
  component_key "$name"
  st=$(go_stage "$name")
  # The stamp alone is not trusted if the output went missing.
  [[ -d "$dir" ]] || rm -f "$CERTCTL_CACHE/stamps/$st"
  stage "$st" "$key" "build_${name//-/_}"
}

ALL_COMPONENTS=(pause netprobe kubernetes etcd coredns kube-router crictl)
[[ $# -gt 0 ]] || set -- all
if [[ $1 == key ]]; then component_key "$2"; echo "$key"; exit 0; fi
for n in "$@"; do
  if [[ $n == all ]]; then for m in "${ALL_COMPONENTS[@]}"; do build_one "$m"; done
  else build_one "$n"; fi
done
