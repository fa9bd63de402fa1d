"""Where the control-plane binaries come from.

They are built once from the pinned `k8s.io/kubernetes` Go module by
`scripts/build-control-plane.sh` into a cache outside the repository (minutes the first
time, instant afterwards), or taken from a directory the user already has: envtest's
`KUBEBUILDER_ASSETS`, or `MLKUBE_K8S_BIN`. An installed (non-editable) mlkube has no
script next to it, so it falls back to whatever the cache already holds.
"""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubelet", "kube-proxy")
# Kept equal to the k8s.io/kubernetes version in controlplane/go.mod (read from there when
# the repository is at hand).
DEFAULT_K8S_VERSION = "v1.35.4"


class BinariesNotFound(RuntimeError):
    pass


def repo_root() -> Path | None:
    """The source checkout this package runs from, if it runs from one."""
    root = Path(__file__).resolve().parents[2]
    if (root / "scripts" / "build-control-plane.sh").is_file():
        return root
    return None


def k8s_version() -> str:
    root = repo_root()
    if root is not None:
        gomod = root / "controlplane" / "go.mod"
        if gomod.is_file():
            m = re.search(r"^\s*k8s\.io/kubernetes\s+(v\S+)", gomod.read_text(), re.MULTILINE)
            if m:
                return m.group(1)
    return DEFAULT_K8S_VERSION


def _complete(d: Path) -> bool:
    return all(os.access(d / c, os.X_OK) for c in COMPONENTS)


def _cache_root() -> Path:
    env = os.environ.get("MLKUBE_CACHE_DIR")
    if env:
        return Path(env).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "mlkube"


def _run_build_script(root: Path, script: str) -> Path:
    """Run scripts/<script>, which builds into the cache (or finds its build there) and
    prints the directory on its last line; its progress goes to our stderr."""
    proc = subprocess.run(
        ["bash", str(root / "scripts" / script)], stdout=subprocess.PIPE, text=True, check=False
    )
    lines = proc.stdout.strip().splitlines()
    if proc.returncode != 0 or not lines:
        raise BinariesNotFound(f"scripts/{script} failed (exit {proc.returncode}); see its output above")
    return Path(lines[-1])


def find_binaries(*, build: bool = True) -> Path:
    """The directory holding etcd, kube-apiserver, kube-controller-manager and kube-scheduler."""
    for var in ("MLKUBE_K8S_BIN", "KUBEBUILDER_ASSETS"):
        val = os.environ.get(var)
        if val and _complete(Path(val).expanduser()):
            return Path(val).expanduser().absolute()
    root = repo_root()
    if root is not None and build:
        d = _run_build_script(root, "build-control-plane.sh")
        if _complete(d):
            return d
        raise BinariesNotFound(f"scripts/build-control-plane.sh printed {d}, which lacks {COMPONENTS}")
    cached = _cache_root() / f"k8s-{k8s_version()}"
    if _complete(cached):
        return cached
    candidates = sorted(
        (d for d in _cache_root().glob("k8s-*") if _complete(d)), key=lambda d: d.stat().st_mtime
    )
    if candidates:
        return candidates[-1]
    raise BinariesNotFound(
        "no Kubernetes control-plane binaries found: run `make control-plane` in the mlkube "
        "repository, or point MLKUBE_K8S_BIN / KUBEBUILDER_ASSETS at a directory holding "
        + ", ".join(COMPONENTS)
    )


def find_kube_router(*, build: bool = True) -> Path:
    """kube-router, the dev cluster's NetworkPolicy enforcer (scripts/build-kube-router.sh).

    `MLKUBE_KUBE_ROUTER` may name the binary; otherwise it is built (seconds when cached)
    or, without the repository, taken from the cache.
    """
    env = os.environ.get("MLKUBE_KUBE_ROUTER")
    if env and os.access(Path(env).expanduser(), os.X_OK):
        return Path(env).expanduser().absolute()
    root = repo_root()
    if root is not None and build:
        d = _run_build_script(root, "build-kube-router.sh")
        binary = d / "kube-router"
        if os.access(binary, os.X_OK):
            return binary
        raise BinariesNotFound(f"scripts/build-kube-router.sh printed {d}, which lacks kube-router")
    candidates = sorted(
        (
            d / "kube-router"
            for d in _cache_root().glob("kube-router-*")
            if os.access(d / "kube-router", os.X_OK)
        ),
        key=lambda p: p.stat().st_mtime,
    )
    if candidates:
        return candidates[-1]
    raise BinariesNotFound(
        "kube-router not found: run `bash scripts/build-kube-router.sh` in the mlkube repository, "
        "or point MLKUBE_KUBE_ROUTER at a kube-router binary"
    )
