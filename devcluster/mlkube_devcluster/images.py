"""The node's images: built on this machine, imported into containerd, never pulled.

No registry is reachable where the dev cluster runs, so every image a pod uses is made
here: mlkube's three images from the project's Dockerfile (`scripts/build-images.sh`,
the same build a user runs with `make image`), and two tiny FROM-scratch images from Go
binaries built from their modules: the pod sandbox and CoreDNS. An image is imported into
containerd's `k8s.io` namespace when containerd lacks it or holds an older build (the
image id is recorded per name), so pods with `imagePullPolicy: IfNotPresent` find it.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from .binaries import repo_root
from .node import SANDBOX_IMAGE
from .state import StateDir

log = logging.getLogger("mlkube.devcluster")

IMAGE_REPO = "localhost/mlkube"
IMAGE_TAG = "dev"
TARGETS = ("operator", "trainer", "server")
COREDNS_IMAGE_REPO = "localhost/mlkube-coredns"


class ImageError(RuntimeError):
    pass


@dataclass(frozen=True)
class BuiltImage:
    target: str
    image: str
    size_bytes: int
    built: bool


def mlkube_image(target: str) -> str:
    return f"{IMAGE_REPO}-{target}:{IMAGE_TAG}"


def _cache_root() -> Path:
    env = os.environ.get("MLKUBE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "mlkube"


def podman_env() -> dict[str, str]:
    """The container storage and engine settings scripts/build-images.sh writes and uses."""
    cache = _cache_root() / "containers"
    env = dict(os.environ)
    env.setdefault("CONTAINERS_STORAGE_CONF", str(cache / "storage.conf"))
    env.setdefault("CONTAINERS_CONF", str(cache / "containers.conf"))
    return env


def _script(name: str) -> Path:
    root = repo_root()
    if root is None:
        raise ImageError(f"scripts/{name} is part of the mlkube source checkout; run from a checkout")
    return root / "scripts" / name


def build_mlkube_images() -> list[BuiltImage]:
    """Build (or find up to date) the operator, trainer and server images."""
    proc = subprocess.run(
        ["bash", str(_script("build-images.sh"))],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "IMAGE_REPO": IMAGE_REPO, "IMAGE_TAG": IMAGE_TAG},
        check=False,
    )
    if proc.returncode != 0:
        raise ImageError(
            f"building mlkube's images failed (exit {proc.returncode}); rerun `make image` to see why"
        )
    built: list[BuiltImage] = []
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) == 4 and parts[0] in TARGETS:
            built.append(BuiltImage(parts[0], parts[1], int(parts[2]), parts[3] == "built"))
    return built


def node_tools_dir() -> Path:
    proc = subprocess.run(
        ["bash", str(_script("build-node-tools.sh"))], stdout=subprocess.PIPE, text=True, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise ImageError(f"scripts/build-node-tools.sh failed (exit {proc.returncode})")
    return Path(lines[-1])


def coredns_image(tools: Path) -> str:
    version = tools.name.rsplit("coredns-", 1)[-1]
    return f"{COREDNS_IMAGE_REPO}:{version}"


def _podman(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["podman", *args], capture_output=True, text=True, env=podman_env(), check=check)


def image_id(image: str) -> str | None:
    proc = _podman("image", "inspect", "--format", "{{.Id}}", image, check=False)
    return proc.stdout.strip() or None if proc.returncode == 0 else None


def build_scratch_image(image: str, binary: Path, containerfile: Path) -> None:
    """A FROM-scratch image holding one static binary; rebuilt when the binary changed."""
    label = f"io.mlkube.binary-mtime={int(binary.stat().st_mtime)}"
    current = _podman(
        "image", "inspect", "--format", '{{index .Labels "io.mlkube.binary-mtime"}}', image, check=False
    )
    if current.returncode == 0 and current.stdout.strip() == label.split("=", 1)[1]:
        return
    with tempfile.TemporaryDirectory() as ctx:
        shutil.copy2(binary, Path(ctx) / binary.name)
        proc = _podman("build", "--label", label, "-t", image, "-f", str(containerfile), ctx, check=False)
    if proc.returncode != 0:
        raise ImageError(f"building {image} failed: {proc.stderr.strip()[-800:]}")


def node_images(tools: Path) -> dict[str, str]:
    """Build the sandbox and CoreDNS images; return image -> podman image id."""
    root = repo_root()
    if root is None:
        raise ImageError("the node images are built from the mlkube source checkout")
    images = {
        SANDBOX_IMAGE: (tools / "pause", root / "devcluster" / "images" / "pause" / "Containerfile"),
        coredns_image(tools): (
            tools / "coredns",
            root / "devcluster" / "images" / "coredns" / "Containerfile",
        ),
    }
    ids: dict[str, str] = {}
    for image, (binary, containerfile) in images.items():
        build_scratch_image(image, binary, containerfile)
        ident = image_id(image)
        if ident is None:
            raise ImageError(f"{image} was built but podman cannot find it")
        ids[image] = ident
    return ids


def _marker(state: StateDir, image: str) -> Path:
    return state.images / (re.sub(r"[^A-Za-z0-9_.-]", "_", image) + ".id")


def _containerd_has(state: StateDir, image: str) -> bool:
    proc = subprocess.run(
        ["ctr", "-a", str(state.containerd_socket), "-n", "k8s.io", "images", "ls", "-q", f"name=={image}"],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.returncode == 0 and image in proc.stdout.split()


def import_images(state: StateDir, images: dict[str, str]) -> list[str]:
    """Import into containerd every image it lacks or holds in an older build."""
    imported: list[str] = []
    for image, ident in images.items():
        marker = _marker(state, image)
        recorded = marker.read_text().strip() if marker.is_file() else None
        if recorded == ident and _containerd_has(state, image):
            continue
        with tempfile.TemporaryDirectory(dir=state.root) as tmp:
            archive = Path(tmp) / "image.tar"
            saved = _podman("save", "--format", "docker-archive", "-o", str(archive), image, check=False)
            if saved.returncode != 0:
                raise ImageError(f"podman save {image} failed: {saved.stderr.strip()[-500:]}")
            # containerd right after a restart may still be settling the snapshots of an
            # interrupted run ("parent snapshot ... does not exist"); a second import of
            # the same archive succeeds once containerd has dropped the stale snapshot, so try
            # five times, 2 to 16 s apart (half a minute), before giving up.
            for attempt in range(5):
                proc = subprocess.run(
                    [
                        "ctr",
                        "-a",
                        str(state.containerd_socket),
                        "-n",
                        "k8s.io",
                        "images",
                        "import",
                        str(archive),
                    ],
                    capture_output=True,
                    text=True,
                    check=False,
                )
                if proc.returncode == 0:
                    break
                log.warning(
                    "Importing %s into containerd failed (attempt %d): %s",
                    image,
                    attempt + 1,
                    proc.stderr.strip()[-300:],
                )
                if attempt < 4:
                    time.sleep(2 ** (attempt + 1))
        if proc.returncode != 0:
            raise ImageError(f"importing {image} into containerd failed: {proc.stderr.strip()[-500:]}")
        marker.write_text(ident + "\n")
        imported.append(image)
        log.info("Imported %s into containerd", image)
    return imported
