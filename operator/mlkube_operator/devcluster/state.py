"""One directory holds everything a dev cluster owns.

Keeping pki, etcd data, logs, pid files, the kubeconfig, pod directories and volumes
under a single root means a cluster can be inspected with `ls`, removed with `rm -rf`,
and several clusters (a developer's `mlkube dev` and a test session's) can run side by
side: each root records the loopback ports and the pod address block it claimed the
first time it came up, and keeps them for its whole life.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

DEFAULT_NODE_NAME = "mlkube-dev"
SERVICE_CIDR = "10.0.0.0/24"
FIRST_SERVICE_IP = "10.0.0.1"
CLUSTER_DOMAIN = "cluster.local"
CONFIG_VERSION = 1

# Pod addresses are 127.0.<block>.x with x from 2 to 254. A machine-wide registry of claimed
# blocks keeps two clusters from handing out the same address; the first gets block 0.
_PODNET_REGISTRY = Path(tempfile.gettempdir()) / "mlkube-dev-podnets"


def default_state_dir() -> Path:
    """`${MLKUBE_DEV_DIR:-${XDG_STATE_HOME:-~/.local/state}/mlkube/dev}`, absolute."""
    env = os.environ.get("MLKUBE_DEV_DIR")
    if env:
        return Path(env).expanduser().absolute()
    base = os.environ.get("XDG_STATE_HOME") or "~/.local/state"
    return (Path(base).expanduser() / "mlkube" / "dev").absolute()


@dataclass(frozen=True)
class Ports:
    etcd_client: int
    etcd_peer: int
    apiserver: int
    controller_manager: int
    scheduler: int
    kubelet: int


@dataclass(frozen=True)
class ClusterConfig:
    """What a state directory decided at its first `up` and keeps for its whole life."""

    ports: Ports
    pod_block: int
    node_name: str = DEFAULT_NODE_NAME
    version: int = CONFIG_VERSION

    @property
    def pod_ip_prefix(self) -> str:
        return f"127.0.{self.pod_block}."

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterConfig:
        raw = json.loads(text)
        return cls(
            ports=Ports(**raw["ports"]),
            pod_block=int(raw["pod_block"]),
            node_name=str(raw.get("node_name", DEFAULT_NODE_NAME)),
            version=int(raw.get("version", CONFIG_VERSION)),
        )


class StateDir:
    """Paths inside one cluster's state directory."""

    def __init__(self, root: Path | str | None = None) -> None:
        self.root = Path(root).expanduser().absolute() if root is not None else default_state_dir()

    def __repr__(self) -> str:
        return f"StateDir({str(self.root)!r})"

    @property
    def config_file(self) -> Path:
        return self.root / "cluster.json"

    @property
    def pki(self) -> Path:
        return self.root / "pki"

    @property
    def etcd_data(self) -> Path:
        return self.root / "etcd"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def run(self) -> Path:
        return self.root / "run"

    @property
    def pods(self) -> Path:
        return self.root / "pods"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def pid_file(self, component: str) -> Path:
        return self.run / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def ensure(self) -> None:
        for d in (self.root, self.pki, self.etcd_data, self.logs, self.run, self.pods, self.volumes):
            d.mkdir(parents=True, exist_ok=True)
        self.pki.chmod(0o700)
        self.etcd_data.chmod(0o700)

    def exists(self) -> bool:
        return self.config_file.is_file()

    def load_config(self) -> ClusterConfig:
        return ClusterConfig.from_json(self.config_file.read_text())

    def load_or_create_config(self, node_name: str = DEFAULT_NODE_NAME) -> ClusterConfig:
        if self.config_file.is_file():
            cfg = self.load_config()
            _claim_pod_block(cfg.pod_block, self.root)
            return cfg
        cfg = ClusterConfig(
            ports=_free_ports(), pod_block=_allocate_pod_block(self.root), node_name=node_name
        )
        self._write_config(cfg)
        return cfg

    def _write_config(self, cfg: ClusterConfig) -> None:
        tmp = self.config_file.with_suffix(".tmp")
        tmp.write_text(cfg.to_json())
        tmp.replace(self.config_file)

    def repick_ports_if_taken(self, cfg: ClusterConfig) -> ClusterConfig:
        """New ports when another program took one of ours while the cluster was down.

        Only call this when none of the cluster's processes runs.
        """
        if not any(_port_taken(p) for p in asdict(cfg.ports).values()):
            return cfg
        new = ClusterConfig(ports=_free_ports(), pod_block=cfg.pod_block, node_name=cfg.node_name)
        self._write_config(new)
        return new

    def release(self) -> None:
        """Forget the pod address block this directory claimed (used when it is purged)."""
        if not self.config_file.is_file():
            return
        with contextlib.suppress(Exception):
            block = self.load_config().pod_block
            entry = _PODNET_REGISTRY / str(block)
            if _registry_owner(entry) == str(self.root):
                entry.unlink()


def _free_ports() -> Ports:
    socks: list[socket.socket] = []
    try:
        for _ in range(6):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        p = [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()
    return Ports(
        etcd_client=p[0],
        etcd_peer=p[1],
        apiserver=p[2],
        controller_manager=p[3],
        scheduler=p[4],
        kubelet=p[5],
    )


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def _registry_owner(entry: Path) -> str | None:
    try:
        return entry.read_text().strip() or None
    except OSError:
        return None


def _entry_is_stale(entry: Path) -> bool:
    owner = _registry_owner(entry)
    if owner is None:
        return True
    cfg_file = Path(owner) / "cluster.json"
    try:
        cfg = ClusterConfig.from_json(cfg_file.read_text())
    except (OSError, ValueError, KeyError):
        return True
    return str(cfg.pod_block) != entry.name


def _allocate_pod_block(root: Path) -> int:
    _PODNET_REGISTRY.mkdir(parents=True, exist_ok=True)
    with contextlib.suppress(OSError):
        _PODNET_REGISTRY.chmod(0o1777)
    for block in range(256):
        entry = _PODNET_REGISTRY / str(block)
        if entry.exists():
            if _registry_owner(entry) == str(root):
                return block
            if not _entry_is_stale(entry):
                continue
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
        try:
            fd = os.open(entry, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                continue
            raise
        with os.fdopen(fd, "w") as f:
            f.write(str(root) + "\n")
        return block
    raise RuntimeError(f"all 256 pod address blocks in {_PODNET_REGISTRY} are claimed by other dev clusters")


def _claim_pod_block(block: int, root: Path) -> None:
    """Re-register an existing directory's block (the registry lives in a temp dir)."""
    entry = _PODNET_REGISTRY / str(block)
    with contextlib.suppress(OSError):
        _PODNET_REGISTRY.mkdir(parents=True, exist_ok=True)
        if not entry.exists() or _entry_is_stale(entry):
            entry.write_text(str(root) + "\n")
