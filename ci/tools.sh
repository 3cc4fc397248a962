#!/usr/bin/env bash
# Provision the pinned helm 3, helm 4, kind, kubectl, cargo-nextest, actionlint and
# chart-testing's ct (ci/versions.env) and the CRDs the render tier validates against; print NAME=PATH lines
# on stdout (logs go to stderr).
#
#   usage: bash ci/tools.sh [helm|helm4|kind|kubectl|nextest|actionlint|ct|crds|all]...  (default: all)
#
# `all` leaves out ct: only the bench tier (docs/ci.md) runs it.
#
# helm is Helm 3 at HELM_VERSION, helm4 is Helm 4 at HELM4_VERSION (binary `helm` too).
#
# Each tool is taken from, in order:
#   1. PATH, if the binary there reports exactly the pinned version;
#   2. the cache, $CERTCTL_CACHE/tools/<name>/<version>/<name> (verified the same way);
#   3. CERTCTL_TOOLS_SOURCE decides how to get it:
#        download  official release binary, verified against the sha256 pinned in
#                  ci/versions.env (needs the internet);
#        build     `go build` from the Go module proxy with version ldflags (needs go);
#        auto      (default) build when a Go toolchain is present, else download.
#      Nothing probes a download host: the choice is explicit.
#      cargo-nextest is always built (`cargo install --locked` from crates.io), actionlint
#      and ct always from the Go module proxy: no checksums of their release binaries are pinned.
# A tool that cannot be had is a hard failure saying what to do.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SOURCE=${CERTCTL_TOOLS_SOURCE:-auto}
TOOLS="$CERTCTL_CACHE/tools"
CRDS="$CERTCTL_CACHE/crds"
mkdir -p "$TOOLS" "$CRDS"

case $(uname -s)/$(uname -m) in
  Linux/x86_64) ARCH=amd64 ;;
  Linux/aarch64 | Linux/arm64) ARCH=arm64 ;;
  *) ARCH="" ;;
esac
ARCH_UC=$(tr '[:lower:]' '[:upper:]' <<<"$ARCH")

# --- version probes: print the version a binary reports -------------------------------
binary_of() { # NAME -> the binary's file name
  case $1 in
    helm4) echo helm ;;
    nextest) echo cargo-nextest ;;
    *) echo "$1" ;;
  esac
}
version_of() { # NAME BINARY
  case $1 in
    helm | helm4) "$2" version --template '{{.Version}}' 2>/dev/null ;;
    kind) "$2" version 2>/dev/null | awk '{print $2}' ;;
    kubectl) "$2" version --client -o json 2>/dev/null | sed -n 's/.*"gitVersion": *"\([^"]*\)".*/\1/p' | head -1 ;;
    nextest) "$2" nextest --version 2>/dev/null | awk 'NR == 1 {print $2}' ;;
    actionlint) "$2" -version 2>/dev/null | awk 'NR == 1 {sub(/^v/, ""); print "v" $1}' ;;
    ct) "$2" version 2>/dev/null | awk '$1 == "Version:" {print $2}' ;;
  esac
}
pinned() {
  case $1 in
    helm) echo "$HELM_VERSION" ;;
    helm4) echo "$HELM4_VERSION" ;;
    kind) echo "$KIND_VERSION" ;;
    kubectl) echo "$KUBERNETES_VERSION" ;;
    nextest) echo "$NEXTEST_VERSION" ;;
    actionlint) echo "$ACTIONLINT_VERSION" ;;
    ct) echo "$CHART_TESTING_VERSION" ;;
  esac
}
is_pinned() { # NAME BINARY
  [[ -x $2 ]] && [[ "$(version_of "$1" "$2")" == "$(pinned "$1")" ]]
}

# --- download: official binaries, sha256 pinned in versions.env -------------------------
sha_pin() { # NAME -> the pinned sha256 for this platform, or empty
  local var="${1^^}_SHA256_LINUX_${ARCH_UC}"
  printf '%s' "${!var:-}"
}
download_url() {
  case $1 in
    helm | helm4) echo "https://get.helm.sh/helm-$(pinned "$1")-linux-$ARCH.tar.gz" ;;
    kind) echo "https://github.com/kubernetes-sigs/kind/releases/download/$KIND_VERSION/kind-linux-$ARCH" ;;
    kubectl) echo "https://dl.k8s.io/release/$KUBERNETES_VERSION/bin/linux/$ARCH/kubectl" ;;
  esac
}
download_tool() { # NAME OUT_DIR
  local name=$1 out=$2 url sha tmp
  [[ -n $ARCH ]] || die "$name: no official download for $(uname -s)/$(uname -m); use CERTCTL_TOOLS_SOURCE=build"
  command -v curl >/dev/null || die "$name: download needs curl (apt-get install curl), or use CERTCTL_TOOLS_SOURCE=build"
  url=$(download_url "$name")
  sha=$(sha_pin "$name")
  [[ -n $sha ]] || die "$name: no sha256 pinned for linux/$ARCH in ci/versions.env; refusing an unverified download"
  tmp=$(mktemp -d)
  log "$name: downloading $url"
  curl -fsSL --retry 3 --connect-timeout 20 -o "$tmp/artifact" "$url" ||
    die "$name: download of $url failed (no internet? use CERTCTL_TOOLS_SOURCE=build)"
  printf '%s  %s\n' "$sha" "$tmp/artifact" | sha256sum -c --status ||
    die "$name: sha256 mismatch for $url: got $(sha256sum <"$tmp/artifact" | cut -d' ' -f1), pinned $sha"
  if [[ $name == helm* ]]; then
    tar -xzf "$tmp/artifact" -C "$tmp" "linux-$ARCH/helm"
    mv "$tmp/linux-$ARCH/helm" "$out/helm"
  else
    mv "$tmp/artifact" "$out/$name"
  fi
  chmod 0755 "$out/$(binary_of "$name")"
  rm -rf "$tmp"
}

# --- build: from the Go module proxy ----------------------------------------------------
go_env() { nice -n 10 env GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS=-buildvcs=false "$@"; }

build_helm() { # OUT_DIR
  local json gomod client_go minor ld
  json=$(cd /tmp && go_env go mod download -json "helm.sh/helm/v3@$HELM_VERSION")
  gomod=$(sed -n 's/^\t"GoMod": "\(.*\)",\?$/\1/p' <<<"$json")
  # helm's Makefile derives the default .Capabilities.KubeVersion from its client-go.
  client_go=$(awk '$1 == "k8s.io/client-go" {print $2}' "$gomod")
  minor=$(cut -d. -f2 <<<"$client_go")
  ld="-s -w -X helm.sh/helm/v3/internal/version.version=$HELM_VERSION"
  ld+=" -X helm.sh/helm/v3/internal/version.metadata= -X helm.sh/helm/v3/internal/version.gitTreeState=clean"
  ld+=" -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor=$minor"
  ld+=" -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$minor"
  (cd /tmp && GOBIN="$1" go_env go install -ldflags "$ld" "helm.sh/helm/v3/cmd/helm@$HELM_VERSION")
}

# Helm 4 (its go.mod asks for Go >= 1.26.0) takes its default .Capabilities.KubeVersion
# from the client-go version in its own build info, so only the version needs ldflags.
build_helm4() { # OUT_DIR
  local ld="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM4_VERSION"
  ld+=" -X helm.sh/helm/v4/internal/version.metadata= -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
  (cd /tmp && GOBIN="$1" go_env go install -ldflags "$ld" "helm.sh/helm/v4/cmd/helm@$HELM4_VERSION")
}

build_kind() { # OUT_DIR
  (cd /tmp && GOBIN="$1" go_env go install -ldflags "-s -w" "sigs.k8s.io/kind@$KIND_VERSION")
}

build_kubectl() { # OUT_DIR
  # Our wrapper module (ci/kubectl) pinned to the k8s.io/kubectl matching KUBERNETES_VERSION.
  local v=$KUBERNETES_VERSION staging="v0.${KUBERNETES_VERSION#v1.}" w major minor ld p
  w=$(mktemp -d)
  cp "$CI_DIR/kubectl/go.mod" "$CI_DIR/kubectl/go.sum" "$CI_DIR/kubectl/main.go" "$w/"
  major=${v#v}; major=${major%%.*}
  minor=${v#v*.}; minor=${minor%%.*}
  ld="-s -w"
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=$major -X $p.gitMinor=$minor -X $p.gitTreeState=clean"
  done
  (cd "$w" && go_env go mod edit -require="k8s.io/kubectl@$staging" -require="k8s.io/component-base@$staging" &&
    GOFLAGS="-mod=mod -buildvcs=false" go_env go build -ldflags "$ld" -o "$1/kubectl" .)
  rm -rf "$w"
}

build_actionlint() { # OUT_DIR
  (cd /tmp && GOBIN="$1" go_env go install -ldflags "-s -w" "github.com/rhysd/actionlint/cmd/actionlint@$ACTIONLINT_VERSION")
}

# `go install ct@version` asks the proxy for the module's version list (for deprecation
# notices), which it refuses here; a throwaway module that requires the exact version
# builds the same binary.
build_ct() { # OUT_DIR
  local w mod=github.com/helm/chart-testing/v3 ld
  w=$(mktemp -d)
  ld="-s -w -X $mod/ct/cmd.Version=$CHART_TESTING_VERSION -X $mod/ct/cmd.GitCommit=module-proxy"
  (cd "$w" && go_env go mod init certctl-ct-build >/dev/null 2>&1 && go_env go get "$mod/ct@$CHART_TESTING_VERSION" &&
    GOFLAGS="-mod=mod -buildvcs=false" go_env go build -ldflags "$ld" -o "$1/ct" "$mod/ct")
  rm -rf "$w"
}

build_nextest() { # OUT_DIR
  command -v cargo >/dev/null || die "nextest: building needs cargo (install Rust: https://rustup.rs)"
  # Its own target dir in the cache: an interrupted build resumes, and the workspace's is untouched.
  local root; root=$(mktemp -d)
  nice -n 10 env CARGO_TARGET_DIR="$TOOLS/cargo-nextest/build" cargo install --quiet --locked --root "$root" \
    --no-default-features --features default-no-update cargo-nextest --version "$NEXTEST_VERSION"
  mv "$root/bin/cargo-nextest" "$1/cargo-nextest"
  # Built: the intermediate artifacts (about a gigabyte) are dead weight.
  rm -rf "$root" "$TOOLS/cargo-nextest/build"
}

# The node-image build may already have produced kubectl at the pinned version.
reuse_node_kubectl() { # OUT_DIR
  local k="$CERTCTL_CACHE/go/kubernetes/$KUBERNETES_VERSION/kubectl"
  is_pinned kubectl "$k" || return 1
  cp "$k" "$1/kubectl"
}

# --- provision one tool -----------------------------------------------------------------
provision() { # NAME -> prints NAME=PATH
  local name=$1 bin ver dir found t0 how
  bin=$(binary_of "$name")
  ver=$(pinned "$name")
  # Keyed by binary and version: helm 3 and helm 4 sit side by side under tools/helm/.
  dir="$TOOLS/$bin/$ver"
  found=$(command -v "$bin" || true)
  if [[ -n $found ]] && is_pinned "$name" "$found"; then
    printf '%s=%s\n' "${name^^}" "$found"; return
  fi
  if is_pinned "$name" "$dir/$bin"; then
    printf '%s=%s\n' "${name^^}" "$dir/$bin"; return
  fi
  # One provisioner at a time per binary, even across processes.
  mkdir -p "$TOOLS/$bin"
  exec 9>"$TOOLS/$bin/.lock"
  flock 9
  if ! is_pinned "$name" "$dir/$bin"; then
    how=$SOURCE
    if [[ $how == auto ]]; then
      if command -v go >/dev/null; then how=build; else how=download; fi
    fi
    # A tool with no release checksum pinned (nextest, actionlint, ct, helm4 until its
    # checksum is pinned) is always built: never an unverified download.
    [[ $how == download && -z $(sha_pin "$name") ]] && how=build
    t0=$(date +%s)
    rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
    case $how in
      download) download_tool "$name" "$dir.tmp" ;;
      build)
        if [[ $name == nextest ]]; then
          log "nextest $ver: cargo install --locked from crates.io (minutes on a cold cache)"
          build_nextest "$dir.tmp"
        else
          command -v go >/dev/null || die "$name: building needs Go (/usr/local/go/bin/go), or use CERTCTL_TOOLS_SOURCE=download"
          if [[ $name == kubectl ]] && reuse_node_kubectl "$dir.tmp"; then
            how="reuse of the node-image kubectl"
          else
            log "$name $ver: building from the Go module proxy (minutes on a cold cache)"
            "build_$name" "$dir.tmp"
          fi
        fi ;;
      *) die "CERTCTL_TOOLS_SOURCE=$SOURCE: expected auto, download or build" ;;
    esac
    is_pinned "$name" "$dir.tmp/$bin" ||
      die "$name: the $how result reports '$(version_of "$name" "$dir.tmp/$bin")', want $ver"
    rm -rf "$dir"; mv "$dir.tmp" "$dir"
    printf 'tool %-8s %-8s %-40s %4ss\n' "$name" "$ver" "$how" "$(($(date +%s) - t0))" |
      tee -a "$CERTCTL_CACHE/timings.log" >&2
  fi
  exec 9>&-
  printf '%s=%s\n' "${name^^}" "$dir/$bin"
}

# --- CRDs of the custom resources the chart renders ---------------------------------------
# Taken from the projects' own Go module zips (the proxy serves them; nothing is vendored).
crd_from_module() { # VAR MODULE VERSION PATH_IN_MODULE
  local var=$1 mod=$2 ver=$3 path=$4 out json dir
  out="$CRDS/${mod##*/}/$ver/$(basename "$path")"
  if [[ ! -s $out ]]; then
    json=$(cd /tmp && env GOFLAGS=-mod=mod go mod download -json "$mod@$ver") ||
      die "crds: go mod download $mod@$ver failed (is the Go module proxy reachable?)"
    dir=$(sed -n 's/^\t"Dir": "\(.*\)",\?$/\1/p' <<<"$json")
    [[ -f $dir/$path ]] || die "crds: $path not found in $mod@$ver"
    mkdir -p "$(dirname "$out")"
    cp "$dir/$path" "$out.tmp" && mv "$out.tmp" "$out"
  fi
  printf '%s=%s\n' "$var" "$out"
}
provision_crds() {
  command -v go >/dev/null || die "crds: needs Go (/usr/local/go/bin/go) to read the CRDs from the Go module proxy"
  crd_from_module CERT_MANAGER_CERTIFICATE_CRD github.com/cert-manager/cert-manager \
    "$CERT_MANAGER_VERSION" deploy/crds/cert-manager.io_certificates.yaml
  crd_from_module SERVICEMONITOR_CRD github.com/prometheus-operator/prometheus-operator \
    "$PROMETHEUS_OPERATOR_VERSION" example/prometheus-operator-crd/monitoring.coreos.com_servicemonitors.yaml
}

[[ $# -gt 0 ]] || set -- all
for what in "$@"; do
  case $what in
    helm | helm4 | kind | kubectl | nextest | actionlint | ct) provision "$what" ;;
    crds) provision_crds ;;
    all) for t in helm helm4 kind kubectl nextest actionlint; do provision "$t"; done; provision_crds ;;
    *) die "unknown tool '$what' (expected helm, helm4, kind, kubectl, nextest, actionlint, ct, crds or all)" ;;
  esac
done
