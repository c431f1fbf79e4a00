#!/usr/bin/env bash
# Fetches the web UI's third-party libraries from the npm registry into
# static/vendor/, with their licenses. The files are committed, so running the
# server needs no build step; run this only to upgrade a library (edit the
# versions below, run it, test, commit).
set -euo pipefail

SIGMA=3.0.3               # WebGL graph renderer (bundles its node/edge programs)
GRAPHOLOGY=0.26.0         # graph data structure sigma draws from
GRAPHOLOGY_LIBRARY=0.8.0  # ForceAtlas2 layout (web worker) and friends

cd "$(dirname "$0")/.."
out=static/vendor
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

fetch() { # package version file-in-dist target-name
  (cd "$work" && npm pack --silent "$1@$2" >/dev/null)
  local tarball="$work/$(echo "$1" | sed 's/^@//; s#/#-#')-$2.tgz"
  mkdir -p "$work/$1"
  tar xzf "$tarball" -C "$work/$1"
  cp "$work/$1/package/dist/$3" "$out/$4"
  cp "$work/$1/package/LICENSE"* "$out/$1.LICENSE.txt"
  echo "$1 $2 $(sha256sum "$out/$4" | cut -d' ' -f1)" >> "$out/VERSIONS.new"
}

rm -f "$out/VERSIONS.new"
fetch sigma "$SIGMA" sigma.min.js sigma.min.js
fetch graphology "$GRAPHOLOGY" graphology.umd.min.js graphology.umd.min.js
fetch graphology-library "$GRAPHOLOGY_LIBRARY" graphology-library.min.js graphology-library.min.js
{ echo "# package version sha256 — written by scripts/vendor-ui.sh"; cat "$out/VERSIONS.new"; } > "$out/VERSIONS"
rm "$out/VERSIONS.new"
cat "$out/VERSIONS"
