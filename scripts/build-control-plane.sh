#!/usr/bin/env bash
# Builds the pinned Kubernetes control plane (kube-apiserver, kube-controller-manager,
# kube-scheduler), the node's kubelet and kube-proxy, and etcd from Go modules into a cache outside the repository.
# Prints the directory holding the binaries on its last line.
#
# Honours KUBEBUILDER_ASSETS: when it names a directory that already holds the four
# binaries (as envtest's setup-envtest leaves them), nothing is built.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
mod="$here/controlplane"
version="$(awk '$1=="k8s.io/kubernetes"{print $2}' "$mod/go.mod")"
bins=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl kubelet kube-proxy)

have_all() { local d="$1"; shift; for b in "$@"; do [ -x "$d/$b" ] || return 1; done; }

# envtest ships etcd, kube-apiserver and kubectl only; the dev cluster also runs the
# controller manager, the scheduler, the kubelet and kube-proxy, so KUBEBUILDER_ASSETS
# must hold those too.
if [ -n "${KUBEBUILDER_ASSETS:-}" ] && have_all "$KUBEBUILDER_ASSETS" etcd kube-apiserver kube-controller-manager kube-scheduler kubelet kube-proxy; then
  echo "$KUBEBUILDER_ASSETS"; exit 0
fi
out="${MLKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlkube}/k8s-$version"
if have_all "$out" "${bins[@]}" && [ "$out/.stamp" -nt "$mod/go.mod" ] && [ "$out/.stamp" -nt "$0" ]; then
  echo "$out"; exit 0
fi
command -v go >/dev/null || { echo "build-control-plane: 'go' not found on PATH (Go >= 1.25 needed)" >&2; exit 1; }
mkdir -p "$out"
start=$(date +%s)
cd "$mod"
export CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
echo "build-control-plane: building Kubernetes $version into $out (first time: several minutes)" >&2
minor="$(echo "$version" | cut -d. -f2)"
ldflags="-s -w"
# Stamp the release into the binaries as the Kubernetes build does, so that
# /version and `kubectl version` report v1.x.y instead of v0.0.0-master.
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor -X $pkg.gitTreeState=clean"
done
go build -trimpath -ldflags "$ldflags" -o "$out/" \
  k8s.io/kubernetes/cmd/kube-apiserver \
  k8s.io/kubernetes/cmd/kube-controller-manager \
  k8s.io/kubernetes/cmd/kube-scheduler \
  k8s.io/kubernetes/cmd/kubectl \
  k8s.io/kubernetes/cmd/kubelet \
  k8s.io/kubernetes/cmd/kube-proxy \
  ./cmd/etcd >&2
touch "$out/.stamp"
echo "build-control-plane: done in $(( $(date +%s) - start ))s, $(du -sh "$out" | cut -f1)" >&2
echo "$out"
