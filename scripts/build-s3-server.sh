#!/usr/bin/env bash
# Builds SeaweedFS's `weed` (an S3-compatible object store, used by the tests as a
# real data source and artifact store) from its Go module into a cache outside the
# repository. Prints the path of the binary on its last line.
#
# Honours MLKUBE_WEED: when it names an executable, nothing is built.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
# Pinned: the Go module proxy's pseudo-version of SeaweedFS (it publishes no semver tags).
version="v0.0.0-20261109003541-7506e5f91cd6"
if [ -n "${MLKUBE_WEED:-}" ] && [ -x "$MLKUBE_WEED" ]; then echo "$MLKUBE_WEED"; exit 0; fi
out="${MLKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlkube}/seaweedfs-$version"
if [ -x "$out/weed" ] && [ "$out/.stamp" -nt "$0" ]; then echo "$out/weed"; exit 0; fi
command -v go >/dev/null || { echo "build-s3-server: 'go' not found on PATH (Go >= 1.25 needed)" >&2; exit 1; }
mkdir -p "$out"
# One build at a time: a second caller waits for the first and then finds the binary.
exec 9>"$out/.lock"
flock 9
if [ -x "$out/weed" ] && [ "$out/.stamp" -nt "$0" ]; then echo "$out/weed"; exit 0; fi
start=$(date +%s)
export CGO_ENABLED=0 GOFLAGS="-buildvcs=false -mod=mod"
echo "build-s3-server: building SeaweedFS $version into $out (first time: several minutes)" >&2
# SeaweedFS's go.mod has replace directives, so `go install module@version` refuses
# it: download the module and build it as the main module, from a copy of its source.
src="$(go mod download -json "github.com/seaweedfs/seaweedfs@$version" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
[ -d "$src" ] || { echo "build-s3-server: cannot download github.com/seaweedfs/seaweedfs@$version" >&2; exit 1; }
work="$(mktemp -d)"
trap 'chmod -R u+w "$work"; rm -rf "$work"' EXIT
cp -r "$src/." "$work/"
chmod -R u+w "$work"
(cd "$work" && go build -trimpath -ldflags "-s -w" -o "$out/weed" ./weed) >&2
touch "$out/.stamp"
echo "build-s3-server: done in $(( $(date +%s) - start ))s, $(du -sh "$out" | cut -f1)" >&2
echo "$out/weed"
