#!/usr/bin/env bash
# Builds mlkube's three images (operator, trainer, server) from the one Dockerfile with
# podman (or buildah), without a Docker engine or a registry.
#
#   scripts/build-images.sh                 # images tagged $IMAGE_REPO-<target>:$IMAGE_TAG
#   BASE_IMAGE=python:3.11-slim scripts/build-images.sh
#   IMAGE_REPO=registry.example.com/ml/mlkube IMAGE_TAG=0.1.0 IMAGE_PUSH=1 scripts/build-images.sh
#
# IMAGE_PUSH (any value): push each image after building it (docs/install.md); log in with
# `podman login <registry>` first.
#
# BASE_IMAGE: what the Dockerfile builds on. Unset, the public python:3.11-slim is used
# when its registry answers; otherwise a base is made from Debian packages with
# mmdebstrap (python3 + python3-venv + ca-certificates), which needs no registry at all.
# Each image carries the sha256 of its build inputs as the label io.mlkube.source-hash;
# an image whose label matches is not rebuilt. The host's CA bundle reaches pip as a
# build secret (TLS may go through an intercepting proxy), never as a layer.
# Prints one line per image: "<target> <image> <size-bytes> <built|cached>".
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
cache="${MLKUBE_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/mlkube}"
repo="${IMAGE_REPO:-localhost/mlkube}"
tag="${IMAGE_TAG:-dev}"
targets=(${IMAGE_TARGETS:-operator trainer server})
debian_base="localhost/mlkube-base:bookworm"
public_base="python:3.11-slim"

# Our own container storage and engine settings, so builds never touch (or depend on) a
# user's podman configuration. cgroupfs + runc: crun and systemd cgroups are not
# available everywhere; explicit rlimits because root may lack CAP_SYS_RESOURCE.
mkdir -p "$cache/containers"
if [ -z "${CONTAINERS_STORAGE_CONF:-}" ]; then
  export CONTAINERS_STORAGE_CONF="$cache/containers/storage.conf"
  cat > "$CONTAINERS_STORAGE_CONF.tmp" <<CONF
[storage]
driver = "overlay"
runroot = "$cache/containers/run"
graphroot = "$cache/containers/storage"
CONF
  mv "$CONTAINERS_STORAGE_CONF.tmp" "$CONTAINERS_STORAGE_CONF"
fi
if [ -z "${CONTAINERS_CONF:-}" ]; then
  export CONTAINERS_CONF="$cache/containers/containers.conf"
  cat > "$CONTAINERS_CONF.tmp" <<CONF
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "$cache/containers/events.log"
runtime = "runc"
tmp_dir = "$cache/containers/tmp"
[containers]
netns = "host"
default_ulimits = ["nofile=16384:16384", "nproc=8192:8192"]
CONF
  mv "$CONTAINERS_CONF.tmp" "$CONTAINERS_CONF"
fi

if command -v podman >/dev/null; then engine=podman
elif command -v buildah >/dev/null; then engine=buildah
else
  echo "build-images: neither podman nor buildah is installed (Debian: apt-get install podman)" >&2; exit 1
fi

label_of() { "$engine" inspect --type image --format '{{index .Labels "io.mlkube.source-hash"}}' "$1" 2>/dev/null || true; }
exists() { "$engine" inspect --type image "$1" >/dev/null 2>&1; }

registry_answers() {
  command -v skopeo >/dev/null || return 1
  timeout 15 skopeo inspect --retry-times 0 "docker://docker.io/library/$public_base" >/dev/null 2>&1
}

build_debian_base() {
  exists "$debian_base" && return 0
  command -v mmdebstrap >/dev/null || {
    echo "build-images: no registry reachable and mmdebstrap missing (apt-get install mmdebstrap)" >&2; exit 1; }
  echo "build-images: making $debian_base from Debian packages (mmdebstrap)" >&2
  local tar="$cache/containers/debian-base.tar"
  mmdebstrap --quiet --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$tar" >&2
  "$engine" import --change 'CMD ["/bin/bash"]' "$tar" "$debian_base" >&2
  rm -f "$tar"
}

if [ -z "${BASE_IMAGE:-}" ]; then
  if exists "$public_base" || registry_answers; then BASE_IMAGE="$public_base"
  else build_debian_base; BASE_IMAGE="$debian_base"; fi
fi

# The inputs of the build: the Dockerfile and the files it copies.
hash=$(cd "$here" && { echo "base=$BASE_IMAGE"; find Dockerfile pyproject.toml README.md operator serving -type f \
        ! -path '*/__pycache__/*' ! -name '*.pyc' -print0 | sort -z | xargs -0 sha256sum; } | sha256sum | cut -c1-16)

secret=()
ca="${SSL_CERT_FILE:-/etc/ssl/certs/ca-certificates.crt}"
[ -s "$ca" ] && secret=(--secret "id=hostca,src=$ca")

for t in "${targets[@]}"; do
  image="$repo-$t:$tag"
  state=cached
  if [ "$(label_of "$image")" != "$hash" ]; then
    echo "build-images: building $image (target $t, base $BASE_IMAGE)" >&2
    "$engine" build --network=host --layers --target "$t" --build-arg "BASE_IMAGE=$BASE_IMAGE" \
      "${secret[@]}" --label "io.mlkube.source-hash=$hash" -t "$image" -f "$here/Dockerfile" "$here" >&2
    state=built
  fi
  size=$("$engine" inspect --type image --format '{{.Size}}' "$image")
  if [ -n "${IMAGE_PUSH:-}" ]; then
    echo "build-images: pushing $image" >&2
    "$engine" push "$image" >&2
  fi
  echo "$t $image $size $state"
done
