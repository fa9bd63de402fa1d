#!/usr/bin/env bash
# Builds kube-router, the dev cluster's NetworkPolicy enforcer (run with its firewall
# controller only), from the Go module devcluster/kube-router into a cache outside the
# repository. Prints the directory holding it on its last line. A dev/test-harness
# component only: it is never part of mlkube's images or manifests (docs/devcluster.md).
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
mod="$here/devcluster/kube-router"
version="$(grep -oE 'github.com/cloudnativelabs/kube-router/v2 v[0-9.]+' "$mod/go.mod" | awk '{print $2}')"
[ -n "$version" ] || { echo "build-kube-router: no kube-router version in $mod/go.mod" >&2; exit 1; }
out="${MLKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlkube}/kube-router-$version"
fresh=1
[ -x "$out/kube-router" ] || fresh=0
for f in "$mod/go.mod" "$mod/go.sum" "$0"; do [ -f "$out/.stamp" ] && [ "$out/.stamp" -nt "$f" ] || fresh=0; done
if [ "$fresh" = 1 ]; then echo "$out"; exit 0; fi
command -v go >/dev/null || { echo "build-kube-router: 'go' not found on PATH (Go >= 1.25 needed)" >&2; exit 1; }
mkdir -p "$out"
start=$(date +%s)
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
echo "build-kube-router: building kube-router $version into $out" >&2
(cd "$mod" && go build -trimpath \
  -ldflags "-s -w -X github.com/cloudnativelabs/kube-router/v2/pkg/version.Version=$version" \
  -o "$out/kube-router.new" github.com/cloudnativelabs/kube-router/v2/cmd/kube-router) >&2
# Replaced by rename: a running kube-router keeps its (now deleted) file; `mlkube dev up`
# restarts it on the new one.
mv -f "$out/kube-router.new" "$out/kube-router"
touch "$out/.stamp"
echo "build-kube-router: done in $(( $(date +%s) - start ))s" >&2
echo "$out"
