"""One directory holds everything a dev cluster owns.

Keeping pki, etcd data, logs, pid files, the kubeconfig, containerd's root, the
kubelet's root and the volumes under a single root means a cluster can be inspected with
`ls` and removed with `rm -rf`. A root records the ports it claimed the first time it came
up and keeps them for its whole life. One node runs per machine (kube-proxy's iptables
chains and the CNI bridge are machine-wide), so the tests use the same root as
`mlkube dev` unless MLKUBE_DEV_DIR names another.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
from dataclasses import asdict, dataclass, fields
from pathlib import Path

DEFAULT_NODE_NAME = "mlkube-dev"
SERVICE_CIDR = "10.0.0.0/24"
FIRST_SERVICE_IP = "10.0.0.1"
CLUSTER_DOMAIN = "cluster.local"
CONFIG_VERSION = 2

# Pods get addresses from POD_CIDR on the bridge BRIDGE; Services from SERVICE_CIDR, the
# cluster DNS at DNS_SERVICE_IP. Chosen away from podman's (10.88/16) and Docker's
# (172.17/16) defaults.
POD_CIDR = "10.244.0.0/24"
BRIDGE = "mlkube0"
DNS_SERVICE_IP = "10.0.0.10"


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
    kubelet_healthz: int
    kube_proxy_healthz: int
    kube_proxy_metrics: int


@dataclass(frozen=True)
class ClusterConfig:
    """What a state directory decided at its first `up` and keeps for its whole life."""

    ports: Ports
    node_name: str = DEFAULT_NODE_NAME
    version: int = CONFIG_VERSION

    @property
    def apiserver_url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    def to_json(self) -> str:
        return json.dumps(asdict(self), indent=2, sort_keys=True) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterConfig:
        raw = json.loads(text)
        if int(raw.get("version", 1)) != CONFIG_VERSION:
            raise ValueError(
                f"cluster.json version {raw.get('version', 1)} (this mlkube writes {CONFIG_VERSION})"
            )
        return cls(
            ports=Ports(**raw["ports"]),
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
    def containerd(self) -> Path:
        return self.root / "containerd"

    @property
    def containerd_socket(self) -> Path:
        return self.containerd / "containerd.sock"

    @property
    def cni(self) -> Path:
        return self.root / "cni"

    @property
    def kubelet(self) -> Path:
        return self.root / "kubelet"

    @property
    def kube_proxy(self) -> Path:
        return self.root / "kube-proxy"

    @property
    def images(self) -> Path:
        """Markers of the images imported into containerd (image id per name)."""
        return self.root / "images"

    @property
    def volumes(self) -> Path:
        return self.root / "volumes"

    @property
    def kubeconfig(self) -> Path:
        return self.root / "kubeconfig"

    @property
    def host_changes(self) -> Path:
        return self.root / "host-changes.json"

    @property
    def lock_file(self) -> Path:
        return self.root / ".lock"

    def pid_file(self, component: str) -> Path:
        return self.run / f"{component}.pid"

    def log_file(self, component: str) -> Path:
        return self.logs / f"{component}.log"

    def ensure(self) -> None:
        for d in (
            self.root,
            self.pki,
            self.etcd_data,
            self.logs,
            self.run,
            self.containerd,
            self.cni,
            self.kubelet,
            self.kube_proxy,
            self.images,
            self.volumes,
        ):
            d.mkdir(parents=True, exist_ok=True)
        self.pki.chmod(0o700)
        self.etcd_data.chmod(0o700)

    def exists(self) -> bool:
        return self.config_file.is_file()

    def load_config(self) -> ClusterConfig:
        return ClusterConfig.from_json(self.config_file.read_text())

    def load_or_create_config(self, node_name: str = DEFAULT_NODE_NAME) -> ClusterConfig:
        if self.config_file.is_file():
            with contextlib.suppress(ValueError, KeyError, TypeError):
                return self.load_config()
        cfg = ClusterConfig(ports=_free_ports(), node_name=node_name)
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
        new = ClusterConfig(ports=_free_ports(), node_name=cfg.node_name)
        self._write_config(new)
        return new


def _free_ports() -> Ports:
    socks: list[socket.socket] = []
    try:
        for _ in range(len(fields(Ports))):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return Ports(*(s.getsockname()[1] for s in socks))
    finally:
        for s in socks:
            s.close()


def _port_taken(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False
