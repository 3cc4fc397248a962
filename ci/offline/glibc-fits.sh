#!/usr/bin/env bash
# Refuses a host-built binary whose glibc symbol versions are newer than the image
# base's glibc: it would die in the pod with "GLIBC_2.xx not found". Names both.
#   ci/offline/glibc-fits.sh BINARY BASE_GLIBC_VERSION BASE_NAME
set -euo pipefail
bin=$1 base=$2 base_name=$3
[[ -r $bin ]] || { echo "glibc-fits: $bin is not a readable file" >&2; exit 2; }
[[ $base =~ ^[0-9]+\.[0-9]+$ ]] || { echo "glibc-fits: base glibc version '$base' is not MAJOR.MINOR" >&2; exit 2; }
command -v readelf >/dev/null || { echo "glibc-fits: readelf not found; install binutils" >&2; exit 2; }
# The glibc symbol versions the binary's dynamic section requires (.gnu.version_r).
need=$(readelf -V --wide "$bin" | grep -oE 'Name: GLIBC_[0-9]+\.[0-9]+' | sed 's/^Name: GLIBC_//' | sort -uV | tail -n 1 || true)
if [[ -z $need ]]; then
  echo "$(basename "$bin"): requires no glibc symbol version (static), fits $base_name"
  exit 0
fi
if [[ $(printf '%s\n%s\n' "$need" "$base" | sort -V | tail -n 1) != "$base" ]]; then
  host=$(ldd --version 2>/dev/null | head -n 1 | grep -oE '[0-9]+\.[0-9]+$' || echo unknown)
  cat >&2 <<MSG
$(basename "$bin") needs glibc $need (built on this host, glibc $host), but the image base ($base_name) has glibc $base:
it would fail in the pod with "GLIBC_$need not found". Build the images on a host whose glibc is
at most $base, or give the binaries' base a newer Debian suite (NODE_DEBIAN_SUITE in ci/versions.env).
MSG
  exit 1
fi
echo "$(basename "$bin"): needs glibc $need, fits $base_name (glibc $base)"
