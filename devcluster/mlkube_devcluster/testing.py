"""What tests get from the dev-cluster harness (tests/conftest.py builds it).

Kept in the package rather than in conftest.py so test modules, benchmarks and the
operator's end-to-end tests can name the type and reuse the same waiting helper, and so
the harness is type-checked with the rest of the dev cluster.
"""

from __future__ import annotations

import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")


@dataclass
class DevClusterHandle:
    """A running dev cluster: where its state lives and how to talk to it."""

    state_dir: Path
    kubeconfig: str
    api_client: Any  # kubernetes.client.ApiClient
    timings: dict[str, float] = field(default_factory=dict)
    node_ip: str = "127.0.0.1"

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against this cluster; raise AssertionError with stderr when it fails."""
        proc = subprocess.run(
            ["kubectl", "--kubeconfig", self.kubeconfig, *args],
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"kubectl {' '.join(args)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}"
            )
        return proc

    def log_tail(self, component: str, lines: int = 40) -> str:
        path = self.state_dir / "logs" / f"{component}.log"
        try:
            return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return f"(no {path})"


def wait_for(fn: Callable[[], T | None], timeout: float, what: str, interval: float = 0.2) -> T:
    """Poll `fn` until it returns something truthy; fail naming what never happened."""
    deadline = time.monotonic() + timeout
    while True:
        last = fn()
        if last:
            return last
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what} (last: {last!r})")
        time.sleep(interval)


def service_answers(base_url: str) -> bool:
    """Whether `base_url` (a Service's ClusterIP and port) answers HTTP at all.

    kube-proxy programs a Service's endpoints a moment after the EndpointSlice lists them;
    until then a Service without programmed endpoints rejects connections, so traffic that
    must reach the pods waits for this first.
    """
    try:
        with urllib.request.urlopen(f"{base_url}/v2/health/ready", timeout=5):
            return True
    except urllib.error.HTTPError:
        return True
    except OSError:
        return False
