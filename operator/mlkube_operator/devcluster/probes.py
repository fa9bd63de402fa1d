"""Readiness, liveness and startup probes with the kubelet's timing rules.

Deployments become Available, Services and the operator see ready endpoints, and a hung
model server is restarted, only because probes run; so they follow the real semantics:
first run after initialDelaySeconds, then every periodSeconds, a result flips only after
successThreshold/failureThreshold consecutive results, HTTP 200-399 is success.
"""

from __future__ import annotations

import http.client
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from .kube import Obj

# exec probes run the way containers do; the pod worker supplies how.
ExecRunner = Callable[[Sequence[str], float], int]


@dataclass
class ProbeState:
    kind: str  # "readiness" | "liveness" | "startup"
    spec: Obj
    next_due: float
    successes: int = 0
    failures: int = 0
    result: bool | None = None  # None until the threshold is first met
    last_message: str = ""
    history: list[bool] = field(default_factory=list)

    @property
    def period(self) -> float:
        return float(self.spec.get("periodSeconds") or 10)

    @property
    def timeout(self) -> float:
        return float(self.spec.get("timeoutSeconds") or 1)

    @property
    def success_threshold(self) -> int:
        return int(self.spec.get("successThreshold") or 1)

    @property
    def failure_threshold(self) -> int:
        return int(self.spec.get("failureThreshold") or 3)

    @classmethod
    def new(cls, kind: str, spec: Obj, started: float) -> ProbeState:
        return cls(kind=kind, spec=spec, next_due=started + float(spec.get("initialDelaySeconds") or 0))

    def record(self, ok: bool, message: str, now: float) -> bool | None:
        """Count one result; return the (possibly changed) thresholded result."""
        self.next_due = now + self.period
        self.last_message = message
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.success_threshold:
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.failure_threshold:
                self.result = False
        return self.result


def _port(value: object, container: Obj) -> int:
    if isinstance(value, int):
        return value
    text = str(value)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or []:
        if p.get("name") == text:
            return int(p["containerPort"])
    raise ValueError(f"named port {text!r} not found in container ports")


def run_probe(
    spec: Obj, container: Obj, pod_ip: str, exec_runner: ExecRunner, timeout: float
) -> tuple[bool, str]:
    """One probe attempt: (success, message)."""
    try:
        if "httpGet" in spec:
            return _http(spec["httpGet"], container, pod_ip, timeout)
        if "tcpSocket" in spec:
            tcp = spec["tcpSocket"]
            host = tcp.get("host") or pod_ip
            port = _port(tcp.get("port"), container)
            with socket.create_connection((host, port), timeout=timeout):
                return True, ""
        if "exec" in spec:
            command = list(spec["exec"].get("command") or [])
            code = exec_runner(command, timeout)
            return code == 0, f"command {command} exited with {code}" if code else ""
        if "grpc" in spec:
            # No gRPC health client in the environment: treated as passing, said in docs.
            return True, "grpc probes are not run by the dev kubelet"
    except (OSError, ValueError, http.client.HTTPException, subprocess.SubprocessError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, "no probe handler"


def _http(get: Obj, container: Obj, pod_ip: str, timeout: float) -> tuple[bool, str]:
    host = get.get("host") or pod_ip
    port = _port(get.get("port"), container)
    path = get.get("path") or "/"
    headers: Mapping[str, str] = {h["name"]: h.get("value", "") for h in get.get("httpHeaders") or []}
    conn: http.client.HTTPConnection
    if str(get.get("scheme", "HTTP")).upper() == "HTTPS":
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "kube-probe/1.35", **headers})
        resp = conn.getresponse()
        resp.read(10240)
        ok = 200 <= resp.status < 400
        return ok, "" if ok else f"HTTP probe failed with statuscode: {resp.status}"
    finally:
        conn.close()


def now() -> float:
    return time.monotonic()
