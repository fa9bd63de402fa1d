"""Run the real operator (`kopf run -m mlkube_operator.handlers`) as a child process.

Tests start, kill and restart it exactly as a Deployment would: a separate process
with a kubeconfig, no shared memory with the test.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from mlkube_devcluster.images import mlkube_image


def scoped_env(namespace: str) -> dict[str, str]:
    """Settings for an `mlkube operator` process that watches only `namespace` and holds its
    Lease there, bound to loopback: several such processes (xdist workers running
    host_operator modules side by side) never reconcile each other's objects or share a Lease."""
    return {
        "MLKUBE_LEADER_LEASE_NAMESPACE": namespace,
        "MLKUBE_NAMESPACES": namespace,
        "MLKUBE_BIND_ADDRESS": "127.0.0.1",
    }


class OperatorProcess:
    def __init__(
        self,
        kubeconfig: str,
        log_dir: Path,
        env: dict[str, str] | None = None,
        argv: list[str] | None = None,
        name: str = "operator",
    ) -> None:
        self.kubeconfig = kubeconfig
        self.log_dir = log_dir
        self.extra_env = env or {}
        # Default: kopf alone; `[sys.executable, "-m", "mlkube_operator"]` runs the operator
        # entrypoint (leader election, health and metrics endpoints).
        self.argv = argv
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def log_path(self) -> Path:
        return self.log_dir / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        self.starts += 1
        # The dev cluster's images, as `mlkube dev up --operator=host` sets them: the
        # defaults name a registry the node cannot pull from.
        images = {
            t: mlkube_image(t.split("_")[1].lower()) for t in ("MLKUBE_TRAINER_IMAGE", "MLKUBE_SERVER_IMAGE")
        }
        env = {**os.environ, **images, "KUBECONFIG": self.kubeconfig, **self.extra_env}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        kopf = str(Path(sys.executable).with_name("kopf"))
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                self.argv
                or [kopf, "run", "-m", "mlkube_operator.handlers", "--all-namespaces", "--standalone"],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
            )

    def kill(self) -> None:
        """SIGKILL: the operator gets no chance to tidy up, as in a node crash."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def restart(self) -> None:
        self.kill()
        time.sleep(0.2)
        self.start()

    def logs(self) -> str:
        return "\n".join(
            p.read_text(errors="replace") for p in sorted(self.log_dir.glob(f"{self.name}-*.log"))
        )

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class ClusterOperator:
    """The operator as installed by `mlkube dev up`: a Deployment in mlkube-system.

    kill() removes its pods at once (grace period 0) with the Deployment scaled to zero,
    as a node failure would; start() scales it back and waits until it is available, so
    tests exercise the very pods, ServiceAccount and RBAC a user's cluster runs.
    """

    NAMESPACE = "mlkube-system"
    NAME = "mlkube-operator"
    SELECTOR = "app.kubernetes.io/name=mlkube,app.kubernetes.io/component=operator"

    def __init__(self, kubeconfig: str) -> None:
        self.kubeconfig = kubeconfig
        self.replicas = (
            int(self._kubectl("get", "deploy", self.NAME, "-o", "jsonpath={.spec.replicas}") or 1) or 1
        )
        self.starts = 1
        self._logs: list[str] = []

    def _kubectl(self, *args: str, check: bool = True, timeout: float = 180) -> str:
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, "-n", self.NAMESPACE, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"kubectl {' '.join(args)} exited {proc.returncode}: {proc.stderr}")
        return proc.stdout

    def _scale(self, replicas: int) -> None:
        self._kubectl("scale", f"deploy/{self.NAME}", f"--replicas={replicas}")

    def kill(self) -> None:
        self._logs.append(self.current_logs())
        self._scale(0)
        self._kubectl(
            "delete", "pod", "-l", self.SELECTOR, "--grace-period=0", "--force", "--wait=true", check=False
        )

    def stop(self) -> None:
        self._logs.append(self.current_logs())
        self._scale(0)
        self._kubectl("wait", "--for=delete", "pod", "-l", self.SELECTOR, "--timeout=60s", check=False)

    def start(self) -> None:
        self.starts += 1
        self._scale(self.replicas)
        self._kubectl("rollout", "status", f"deploy/{self.NAME}", "--timeout=120s", timeout=150)

    def restart(self) -> None:
        self.kill()
        self.start()

    def current_logs(self) -> str:
        return self._kubectl(
            "logs", "-l", self.SELECTOR, "--tail=-1", "--prefix", "--all-containers", check=False
        )

    def logs(self) -> str:
        return "\n".join([*self._logs, self.current_logs()])
