"""The one Node, registered and kept Ready the way a kubelet does it.

The node lifecycle controller taints and eventually evicts everything on a node whose
Lease in `kube-node-lease` stops being renewed or whose Ready condition goes stale, so
the kubelet process renews both on the kubelet's own schedule (every 10 s, lease
duration 40 s). Capacity comes from the machine, so the scheduler refuses what the
machine could not run.
"""

from __future__ import annotations

import logging
import os
import platform
import threading
import time
import uuid
from pathlib import Path

from .kube import ApiError, Kube, Obj, now_micro, now_rfc3339

log = logging.getLogger("mlkube.kubelet")

HEARTBEAT_SECONDS = 10.0
LEASE_SECONDS = 40
LEASE_NAMESPACE = "kube-node-lease"


def machine_capacity(state_root: Path) -> dict[str, str]:
    cpus = os.cpu_count() or 1
    mem_kib = 0
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
                break
    except OSError:
        mem_kib = 4 * 1024 * 1024
    st = os.statvfs(state_root)
    disk = st.f_blocks * st.f_frsize
    return {
        "cpu": str(cpus),
        "memory": f"{mem_kib}Ki",
        "pods": "110",
        "ephemeral-storage": str(disk),
    }


def _os_image() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return line.split("=", 1)[1].strip().strip('"')
    except OSError:
        pass
    return platform.platform()


def _machine_id() -> str:
    for p in ("/etc/machine-id", "/var/lib/dbus/machine-id"):
        try:
            return Path(p).read_text().strip()
        except OSError:
            continue
    return uuid.uuid5(uuid.NAMESPACE_DNS, platform.node()).hex


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


class NodeAgent:
    def __init__(
        self, kube: Kube, name: str, kubelet_port: int, capacity: dict[str, str], version: str
    ) -> None:
        self.kube = kube
        self.name = name
        self.kubelet_port = kubelet_port
        self.capacity = capacity
        self.version = version
        self._transitions: dict[str, str] = {}
        self.uid = ""

    def labels(self) -> dict[str, str]:
        arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(platform.machine(), platform.machine())
        return {
            "kubernetes.io/hostname": self.name,
            "kubernetes.io/os": "linux",
            "kubernetes.io/arch": arch,
            "beta.kubernetes.io/os": "linux",
            "beta.kubernetes.io/arch": arch,
            "mlkube.io/dev-node": "true",
        }

    def _conditions(self) -> list[Obj]:
        now = now_rfc3339()
        specs = [
            (
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            ("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"),
            ("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available"),
            ("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ]
        out = []
        for ctype, status, reason, message in specs:
            since = self._transitions.setdefault(ctype, now)
            out.append(
                {
                    "type": ctype,
                    "status": status,
                    "reason": reason,
                    "message": message,
                    "lastHeartbeatTime": now,
                    "lastTransitionTime": since,
                }
            )
        return out

    def status(self) -> Obj:
        arch = self.labels()["kubernetes.io/arch"]
        return {
            "capacity": self.capacity,
            "allocatable": self.capacity,
            "conditions": self._conditions(),
            "addresses": [
                {"type": "InternalIP", "address": "127.0.0.1"},
                {"type": "Hostname", "address": self.name},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": self.kubelet_port}},
            "nodeInfo": {
                "machineID": _machine_id(),
                "systemUUID": _machine_id(),
                "bootID": _boot_id(),
                "kernelVersion": platform.release(),
                "osImage": _os_image(),
                "containerRuntimeVersion": "mlkube-dev://0.1.0",
                "kubeletVersion": self.version,
                "kubeProxyVersion": "",
                "operatingSystem": "linux",
                "architecture": arch,
            },
        }

    def register(self) -> None:
        """Create or update the Node object, then post a full Ready status."""
        path = f"/api/v1/nodes/{self.name}"
        existing = self.kube.get_or_none(path)
        if existing is None:
            try:
                existing = self.kube.create(
                    "/api/v1/nodes",
                    {
                        "apiVersion": "v1",
                        "kind": "Node",
                        "metadata": {"name": self.name, "labels": self.labels()},
                    },
                )
            except ApiError as exc:
                if exc.status != 409:
                    raise
                existing = self.kube.get(path)
            log.info("Registered node %s", self.name)
        else:
            self.kube.patch(path, {"metadata": {"labels": self.labels()}})
        self.uid = str(existing["metadata"]["uid"])
        self.kube.patch(path + "/status", {"status": self.status()})
        self.renew_lease()

    def heartbeat(self) -> None:
        self.kube.patch(f"/api/v1/nodes/{self.name}/status", {"status": {"conditions": self._conditions()}})
        self.renew_lease()

    def renew_lease(self) -> None:
        path = f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases/{self.name}"
        body = {
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": now_micro(),
            }
        }
        try:
            self.kube.patch(path, body)
        except ApiError as exc:
            if exc.status != 404:
                raise
            lease = {
                "apiVersion": "coordination.k8s.io/v1",
                "kind": "Lease",
                "metadata": {
                    "name": self.name,
                    "namespace": LEASE_NAMESPACE,
                    "ownerReferences": [
                        {"apiVersion": "v1", "kind": "Node", "name": self.name, "uid": self.uid}
                    ],
                },
                **body,
            }
            self.kube.create(f"/apis/coordination.k8s.io/v1/namespaces/{LEASE_NAMESPACE}/leases", lease)

    def run_heartbeats(self, stop: threading.Event) -> None:
        while not stop.wait(HEARTBEAT_SECONDS):
            try:
                self.heartbeat()
            except Exception as exc:
                log.warning("node heartbeat failed: %s", exc)
                try:
                    self.register()
                except Exception as exc2:
                    log.warning("node re-registration failed: %s", exc2)


def register_with_retry(agent: NodeAgent, stop: threading.Event, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        try:
            agent.register()
            return
        except Exception as exc:
            if time.monotonic() > deadline or stop.is_set():
                raise
            log.info("node registration not possible yet (%s); retrying", exc)
            time.sleep(delay)
            delay = min(delay * 2, 2.0)
