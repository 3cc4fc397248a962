#!/usr/bin/env bash
# Release gate check: the tag names the chart's version, and that version is higher
# than the chart's at the previous chart-v* tag reachable from this commit.
#   usage: bash ci/chart-version-check.sh chart-v<version>
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
die() { printf 'ERROR: %s\n' "$*" >&2; exit 1; }

tag=${1:?usage: ci/chart-version-check.sh chart-v<version>}
chart_version() { sed -n 's/^version:[[:space:]]*"\{0,1\}\([^"[:space:]]*\)"\{0,1\}[[:space:]]*$/\1/p' | head -1; }

current=$(chart_version <chart/Chart.yaml)
[[ -n $current ]] || die "chart/Chart.yaml has no version: line"
[[ $tag == "chart-v$current" ]] || die "tag $tag does not name the chart's version $current (expected chart-v$current)"

previous_tag=$(git describe --tags --abbrev=0 --match 'chart-v*' "$tag^" 2>/dev/null || true)
if [[ -z $previous_tag ]]; then
  echo "chart $current: first chart-v* tag, nothing to compare with"
  exit 0
fi
previous=$(git show "$previous_tag:chart/Chart.yaml" | chart_version)
[[ -n $previous ]] || die "chart/Chart.yaml at $previous_tag has no version: line"
highest=$(printf '%s\n%s\n' "$previous" "$current" | sort -V | tail -1)
if [[ $current == "$previous" || $highest != "$current" ]]; then
  die "chart version $current does not increase over $previous ($previous_tag); bump version: in chart/Chart.yaml"
fi
echo "chart $current > $previous ($previous_tag)"
