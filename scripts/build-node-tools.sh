#!/usr/bin/env bash
# Builds the dev cluster's node programs that Debian does not package, from Go modules,
# into a cache outside the repository: crictl (cri-tools), the pod sandbox ("pause")
# binary and CoreDNS. Prints the directory holding them on its last line.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${MLKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlkube}"
crictl_version=v1.34.0   # v1.35.0 is not served by the module proxy here
coredns_version="$(grep -oE 'github.com/coredns/coredns v[0-9.]+' "$here/devcluster/images/coredns/go.mod" | awk '{print $2}')"
out="$cache/node-tools-$crictl_version-coredns-$coredns_version"
stamp_inputs=("$here/devcluster/images/pause/main.go" "$here/devcluster/images/coredns/main.go" "$here/devcluster/images/coredns/go.mod" "$0")
fresh=1
for f in crictl pause coredns; do [ -x "$out/$f" ] || fresh=0; done
for f in "${stamp_inputs[@]}"; do [ -f "$out/.stamp" ] && [ "$out/.stamp" -nt "$f" ] || fresh=0; done
if [ "$fresh" = 1 ]; then echo "$out"; exit 0; fi
command -v go >/dev/null || { echo "build-node-tools: 'go' not found on PATH" >&2; exit 1; }
mkdir -p "$out"
start=$(date +%s)
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
echo "build-node-tools: building crictl $crictl_version, pause and CoreDNS $coredns_version into $out" >&2
GOBIN="$out" go install -trimpath -ldflags "-s -w" "sigs.k8s.io/cri-tools/cmd/crictl@$crictl_version" >&2
(cd "$here/devcluster/images/pause" && go build -trimpath -ldflags "-s -w" -o "$out/pause" .) >&2
(cd "$here/devcluster/images/coredns" && go build -trimpath -ldflags "-s -w" -o "$out/coredns" .) >&2
touch "$out/.stamp"
echo "build-node-tools: done in $(( $(date +%s) - start ))s" >&2
echo "$out"
