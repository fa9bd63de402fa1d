"""One worker thread per Pod: its containers as local process groups, and its status.

A real kubelet's per-pod worker serializes everything that happens to one pod (start,
exits, probes, deletion) while pods proceed independently; the same shape here keeps
a slow probe or a long grace period on one pod from delaying every other pod. All state
of a pod is owned by its worker thread; the watch thread only hands it the newest Pod
object and wakes it.

Status is computed from scratch on every pass with the kubelet's rules (phase from
container states and restart policy, Ready/ContainersReady/Initialized/
PodReadyToStartContainers conditions, CrashLoopBackOff waiting states, termination
messages) and sent as a strategic-merge patch only when it changed, with the pod's uid as
precondition so a recreated pod of the same name is never written by a stale worker.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Protocol

from ..constants import IMAGE_REPOSITORY
from . import procs
from .envs import ConfigError, ObjectCache, container_env, expand
from .kube import PATCH_STRATEGIC, ApiError, Kube, Obj, now_rfc3339, ns_path
from .probes import ProbeState, run_probe
from .volumes import PathMap, PodVolumes, VolumeError

log = logging.getLogger("mlkube.kubelet")

BACKOFF_INITIAL = 1.0
BACKOFF_MAX = 60.0
BACKOFF_RESET_AFTER = 600.0
MAX_TERMINATION_MESSAGE = 4096
FALLBACK_LOG_BYTES = 2048
FALLBACK_LOG_LINES = 80
_PYTHON = re.compile(r"^(?:/usr(?:/local)?/bin/)?python(?:3(?:\.\d+)?)?$")
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TERMINAL = ("Succeeded", "Failed")
# The image's ENTRYPOINT and CMD, as in the Dockerfile.
IMAGE_ENTRYPOINT = ["mlkube"]
IMAGE_CMD = ["--help"]


def image_repository(image: str) -> str:
    """`ghcr.io/mlkube/mlkube:0.1.0` and `...@sha256:..` -> `ghcr.io/mlkube/mlkube`."""
    name = image.split("@", 1)[0]
    last_slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > last_slash:
        name = name[:colon]
    return name


@functools.cache
def image_id() -> str:
    """A stable imageID for "the project's own environment": a digest of interpreter + package."""
    from .. import __file__ as pkg_file

    digest = hashlib.sha256(f"{sys.executable}\n{Path(pkg_file).parent}".encode()).hexdigest()
    return f"{IMAGE_REPOSITORY}@sha256:{digest}"


class Context(Protocol):
    """What a pod worker needs from the kubelet that owns it."""

    kube: Kube
    node_name: str
    pods_dir: Path
    venv_bin: Path
    apiserver_port: int
    node_allocatable: dict[str, str]
    stopping: threading.Event

    def allocate_ip(self, uid: str) -> str: ...

    def release_ip(self, uid: str) -> None: ...

    def event(
        self, pod: Obj, reason: str, message: str, *, warning: bool = False, container: str = ""
    ) -> None: ...

    def forget(self, uid: str) -> None: ...


@dataclass
class Run:
    """One execution of a container's process."""

    pid: int
    ticks: int
    container_id: str
    started_at: str
    started_wall: float
    log_path: str
    exit_code: int | None = None
    finished_at: str | None = None
    reason: str = ""
    message: str = ""
    signal: int | None = None

    def terminated(self) -> Obj:
        t: Obj = {
            "exitCode": self.exit_code if self.exit_code is not None else 0,
            "reason": self.reason,
            "startedAt": self.started_at,
            "finishedAt": self.finished_at,
            "containerID": self.container_id,
        }
        if self.message:
            t["message"] = self.message
        if self.signal:
            t["signal"] = self.signal
        return t


@dataclass
class ContainerState:
    spec: Obj
    init: bool
    restart_count: int = 0
    run: Run | None = None
    last_termination: Obj | None = None
    done: bool = False
    waiting: tuple[str, str] | None = None
    backoff: float = 0.0
    restart_at: float | None = None
    ready: bool = False
    started: bool = False
    probes: dict[str, ProbeState] = field(default_factory=dict)
    kill_deadline: float | None = None
    proc: subprocess.Popen[bytes] | None = None
    path_map: PathMap | None = None
    env: dict[str, str] = field(default_factory=dict)
    cwd: str = ""

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    @property
    def sidecar(self) -> bool:
        return self.init and self.spec.get("restartPolicy") == "Always"

    @property
    def running(self) -> bool:
        return self.run is not None and self.run.exit_code is None

    def persist(self) -> Obj:
        return {
            "restart_count": self.restart_count,
            "done": self.done,
            "last_termination": self.last_termination,
            "backoff": self.backoff,
            "run": asdict(self.run) if self.run is not None else None,
        }


def _tail_log(path: Path) -> str:
    try:
        with path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - FALLBACK_LOG_BYTES))
            data = f.read()
    except OSError:
        return ""
    lines = data.decode("utf-8", errors="replace").splitlines()[-FALLBACK_LOG_LINES:]
    return "\n".join(lines)


class PodWorker:
    def __init__(self, ctx: Context, uid: str, pod: Obj | None, restored: Obj | None = None) -> None:
        self.ctx = ctx
        self.uid = uid
        self.pod = pod
        self._pod_lock = threading.Lock()
        self._wake = threading.Event()
        self.gone = False
        self.ip: str | None = None
        self.prepared = False
        self.volumes: PodVolumes | None = None
        self.containers: list[ContainerState] = []
        self.terminal_reported = False
        self.terminating = False
        self.term_deadline = 0.0
        self.delete_requested = False
        self.start_time: str | None = None
        self._last_status: Obj | None = None
        self._cond_times: dict[str, tuple[str, str]] = {}
        self._events_sent: set[tuple[str, str]] = set()
        self._refused = False
        self.namespace = ""
        self.name = ""
        self.pod_dir: Path | None = None
        if pod is not None:
            self._adopt_identity(pod)
            status = pod.get("status") or {}
            if status.get("phase") in TERMINAL:
                # Finished before this kubelet saw it (e.g. its state was wiped): never rerun.
                self.terminal_reported = True
        if restored is not None:
            self._restore(restored)
        self.thread = threading.Thread(target=self._loop, name=f"pod-{uid[:8]}", daemon=True)

    # ---- identity and persistence ----------------------------------------------------

    def _adopt_identity(self, pod: Obj) -> None:
        meta = pod["metadata"]
        self.namespace = str(meta["namespace"])
        self.name = str(meta["name"])
        self.pod_dir = self.ctx.pods_dir / f"{self.namespace}_{self.name}_{self.uid}"

    def _restore(self, saved: Obj) -> None:
        self.namespace = str(saved["namespace"])
        self.name = str(saved["name"])
        self.pod_dir = self.ctx.pods_dir / f"{self.namespace}_{self.name}_{self.uid}"
        self.ip = saved.get("ip")
        self.start_time = saved.get("start_time")
        self.terminal_reported = bool(saved.get("terminal_reported"))
        self._saved_containers: dict[str, Obj] = dict(saved.get("containers") or {})

    def _save(self) -> None:
        if self.pod_dir is None or not self.pod_dir.exists():
            return
        data = {
            "uid": self.uid,
            "namespace": self.namespace,
            "name": self.name,
            "ip": self.ip,
            "start_time": self.start_time,
            "terminal_reported": self.terminal_reported,
            "containers": {c.name: c.persist() for c in self.containers},
        }
        tmp = self.pod_dir / ".state.json.tmp"
        tmp.write_text(json.dumps(data))
        tmp.replace(self.pod_dir / "state.json")

    # ---- called from other threads ----------------------------------------------------

    def start(self) -> None:
        self.thread.start()

    def update(self, pod: Obj) -> None:
        with self._pod_lock:
            self.pod = pod
        self._wake.set()

    def mark_gone(self) -> None:
        self.gone = True
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    # ---- the loop ---------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            self._wake.clear()
            if self.ctx.stopping.is_set():
                return
            try:
                delay = self.sync()
            except Exception:
                log.exception("pod %s/%s: sync failed", self.namespace, self.name)
                delay = 1.0
            if delay is None:
                return
            self._wake.wait(max(0.0, min(delay, 30.0)))

    def sync(self) -> float | None:
        with self._pod_lock:
            pod = self.pod
        if self.gone:
            self._teardown()
            return None
        if pod is None:
            return 5.0  # restored from disk; waiting for the API's copy
        if pod.get("metadata", {}).get("deletionTimestamp"):
            return self._sync_terminating(pod)
        if self.terminal_reported:
            return 30.0
        if self.start_time is None:
            self.start_time = now_rfc3339()
        if not self.prepared:
            delay = self._prepare(pod)
            if not self.prepared:
                self._push_status()
                return delay
        now = time.monotonic()
        self._collect_exits(now)
        self._start_due(now)
        self._kill_overdue(now)
        self._run_probes(time.monotonic())
        if self.volumes is not None:
            try:
                self.volumes.refresh_tokens()
            except ConfigError as exc:
                log.warning("pod %s/%s: token refresh: %s", self.namespace, self.name, exc)
        self._push_status()
        return self._next_wake()

    # ---- preparation ------------------------------------------------------------------

    def _all_specs(self, pod: Obj) -> list[tuple[Obj, bool]]:
        spec = pod.get("spec", {})
        return [(c, True) for c in spec.get("initContainers") or []] + [
            (c, False) for c in spec.get("containers") or []
        ]

    def _ensure_containers(self, pod: Obj) -> None:
        if self.containers:
            return
        saved = getattr(self, "_saved_containers", {})
        api_statuses = {
            s["name"]: s
            for s in (pod.get("status", {}).get("containerStatuses") or [])
            + (pod.get("status", {}).get("initContainerStatuses") or [])
        }
        for spec, init in self._all_specs(pod):
            c = ContainerState(spec=spec, init=init)
            if spec["name"] in saved:
                s = saved[spec["name"]]
                c.restart_count = int(s.get("restart_count", 0))
                c.done = bool(s.get("done"))
                c.last_termination = s.get("last_termination")
                c.backoff = float(s.get("backoff", 0.0))
                if s.get("run"):
                    c.run = Run(**s["run"])
                    if c.run.exit_code is None:
                        self._adopt(c)
            elif spec["name"] in api_statuses:
                c.restart_count = int(api_statuses[spec["name"]].get("restartCount", 0))
            self.containers.append(c)

    def _prepare(self, pod: Obj) -> float:
        self._ensure_containers(pod)
        # Until a container ran, its spec may still change (e.g. `kubectl set image`).
        specs = {spec["name"]: spec for spec, _ in self._all_specs(pod)}
        for c in self.containers:
            if c.run is None and c.name in specs:
                c.spec = specs[c.name]
        refused = False
        for c in self.containers:
            image = str(c.spec.get("image") or "")
            if image_repository(image) != IMAGE_REPOSITORY:
                refused = True
                msg = (
                    f"image \"{image}\" is not mlkube's image: the dev cluster's local kubelet runs only "
                    f"{IMAGE_REPOSITORY}:<tag> containers, as processes of the mlkube environment"
                )
                c.waiting = ("ErrImageNeverPull", msg)
                self._event_once(pod, "ErrImageNeverPull", msg, warning=True, container=c.name)
        if refused:
            self._refused = True
            return 30.0
        self._refused = False
        if self.ip is None:
            host_network = bool(pod.get("spec", {}).get("hostNetwork"))
            self.ip = "127.0.0.1" if host_network else self.ctx.allocate_ip(self.uid)
        assert self.pod_dir is not None
        (self.pod_dir / "home").mkdir(parents=True, exist_ok=True)
        self._save()
        if self.volumes is None:
            self.volumes = PodVolumes(
                self.ctx.kube, self._pod_view(pod), self.pod_dir, self.ctx.node_allocatable
            )
        try:
            self.volumes.setup()
        except (VolumeError, ConfigError) as exc:
            for c in self.containers:
                if c.run is None:
                    c.waiting = ("ContainerCreating", str(exc))
            self._event_once(pod, "FailedMount", str(exc), warning=True)
            return 1.0
        except ApiError as exc:
            log.warning("pod %s/%s: volumes: %s", self.namespace, self.name, exc)
            return 1.0
        for c in self.containers:
            if c.waiting and c.waiting[0] == "ContainerCreating":
                c.waiting = None
            if c.running and c.path_map is None:
                # Re-adopted: exec probes need the environment the process was started with.
                with contextlib.suppress(ConfigError, VolumeError, ApiError):
                    _, c.path_map, c.env, c.cwd = self._container_setup(c, pod)
        self.prepared = True
        self._save()
        return 0.0

    def _pod_view(self, pod: Obj) -> Obj:
        """The pod as the downward API sees it: with the IPs this kubelet assigned."""
        view = dict(pod)
        status = dict(view.get("status") or {})
        status["hostIP"] = "127.0.0.1"
        status["hostIPs"] = [{"ip": "127.0.0.1"}]
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        view["status"] = status
        return view

    # ---- processes ----------------------------------------------------------------------

    def _adopt(self, c: ContainerState) -> None:
        """Keep watching a process a previous kubelet started (exit code will be unknown)."""
        run = c.run
        assert run is not None
        if not procs.pid_alive(run.pid, run.ticks):
            return

        def watch() -> None:
            while procs.pid_alive(run.pid, run.ticks):
                time.sleep(0.5)
            self.wake()

        threading.Thread(target=watch, name=f"adopted-{run.pid}", daemon=True).start()
        c.started = "startupProbe" not in c.spec
        self._init_probes(c)
        log.info("pod %s/%s: re-adopted container %s pid %d", self.namespace, self.name, c.name, run.pid)

    def _poll(self, c: ContainerState) -> tuple[int, str, str] | None:
        """(exit code, reason, message) once the current run ended, else None."""
        run = c.run
        assert run is not None
        if c.proc is not None:
            rc = c.proc.returncode
            if rc is None:
                rc = c.proc.poll()
            if rc is None:
                return None
            if rc < 0:
                run.signal = -rc
                return 128 - rc, "Error", ""
            return rc, ("Completed" if rc == 0 else "Error"), ""
        if procs.pid_alive(run.pid, run.ticks):
            return None
        return (
            137,
            "ContainerStatusUnknown",
            "The container could not be located when the pod was terminated (the kubelet restarted)",
        )

    def _container_dir(self, c: ContainerState) -> Path:
        assert self.pod_dir is not None
        return self.pod_dir / "containers" / c.name

    def _collect_exits(self, now: float) -> None:
        for c in self.containers:
            if c.run is None or c.run.exit_code is not None:
                continue
            result = self._poll(c)
            if result is None:
                continue
            code, reason, message = result
            run = c.run
            run.exit_code = code
            run.reason = reason
            run.finished_at = now_rfc3339()
            procs.signal_group(run.pid, signal.SIGKILL)  # the container's other processes go too
            (self._container_dir(c) / "process.json").unlink(missing_ok=True)
            run.message = message or self._termination_message(c, code)
            c.proc = None
            c.ready = False
            c.started = False
            c.kill_deadline = None
            c.probes.clear()
            log.info(
                "pod %s/%s: container %s pid %d exited with %d",
                self.namespace,
                self.name,
                c.name,
                run.pid,
                code,
            )
            self._after_exit(c, code, now)
        self._save()

    def _termination_message(self, c: ContainerState, code: int) -> str:
        path = self._container_dir(c) / "termination-log"
        msg = ""
        with contextlib.suppress(OSError), path.open("rb") as f:
            msg = f.read(MAX_TERMINATION_MESSAGE).decode("utf-8", errors="replace")
        if not msg and code != 0 and c.spec.get("terminationMessagePolicy") == "FallbackToLogsOnError":
            assert c.run is not None
            msg = _tail_log(Path(c.run.log_path))
        return msg

    def _restart_policy(self, c: ContainerState) -> str:
        if c.sidecar:
            return "Always"
        if c.spec.get("restartPolicy"):
            return str(c.spec["restartPolicy"])
        pod = self.pod or {}
        return str(pod.get("spec", {}).get("restartPolicy") or "Always")

    def _after_exit(self, c: ContainerState, code: int, now: float) -> None:
        if self.terminating:
            c.done = True
            return
        policy = self._restart_policy(c)
        if c.init and not c.sidecar:
            restart = code != 0 and policy != "Never"
            if code == 0:
                c.done = True
        else:
            restart = policy == "Always" or (policy == "OnFailure" and code != 0)
        if not restart:
            c.done = True
            return
        assert c.run is not None
        if time.time() - c.run.started_wall > BACKOFF_RESET_AFTER:
            c.backoff = 0.0
        delay = c.backoff
        c.restart_at = now + delay
        c.backoff = BACKOFF_INITIAL if c.backoff == 0 else min(c.backoff * 2, BACKOFF_MAX)
        if delay > 0:
            self._event(
                "BackOff", f"Back-off restarting failed container {c.name} in pod {self.name}", True, c.name
            )

    def _start_due(self, now: float) -> None:
        if self.terminating:
            return
        inits = [c for c in self.containers if c.init]
        for c in inits:
            if c.sidecar:
                if not c.running and (c.restart_at is None or now >= c.restart_at):
                    self._start(c, now)
                continue
            if c.done:
                if c.run is not None and c.run.exit_code == 0:
                    continue
                return  # failed for good: the pod is Failed
            if c.running:
                return
            if c.restart_at is not None and now < c.restart_at:
                return
            self._start(c, now)
            return
        for c in self.containers:
            if c.init or c.done or c.running:
                continue
            if c.restart_at is not None and now < c.restart_at:
                continue
            self._start(c, now)

    def _base_env(self, pod: Obj) -> dict[str, str]:
        assert self.pod_dir is not None
        hostname = pod.get("spec", {}).get("hostname") or self.name
        return {
            "PATH": f"{self.ctx.venv_bin}:{SYSTEM_PATH}",
            "HOME": str(self.pod_dir / "home"),
            "HOSTNAME": str(hostname),
            "LANG": "C.UTF-8",
            "PYTHONUNBUFFERED": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }

    def _service_env(self) -> dict[str, str]:
        # The API server is reachable on loopback, not on the kubernetes Service's cluster IP.
        port = str(self.ctx.apiserver_port)
        return {
            "KUBERNETES_SERVICE_HOST": "127.0.0.1",
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
            "KUBERNETES_PORT": f"tcp://127.0.0.1:{port}",
            "KUBERNETES_PORT_443_TCP": f"tcp://127.0.0.1:{port}",
            "KUBERNETES_PORT_443_TCP_PROTO": "tcp",
            "KUBERNETES_PORT_443_TCP_PORT": port,
            "KUBERNETES_PORT_443_TCP_ADDR": "127.0.0.1",
        }

    def _resolve_argv(self, argv: list[str], path: str) -> list[str]:
        exe = argv[0]
        if _PYTHON.match(exe):
            return [sys.executable, *argv[1:]]
        if exe == "mlkube" or exe.endswith("/bin/mlkube"):
            script = self.ctx.venv_bin / "mlkube"
            if script.is_file():
                return [str(script), *argv[1:]]
            return [sys.executable, "-m", "mlkube_operator.cli", *argv[1:]]
        if "/" not in exe:
            found = shutil.which(exe, path=path)
            if found:
                return [found, *argv[1:]]
        return argv

    def _command(self, c: ContainerState, env: dict[str, str], pm: PathMap, path: str) -> list[str]:
        command = list(c.spec.get("command") or [])
        args = list(c.spec.get("args") or [])
        argv = command + args if command else IMAGE_ENTRYPOINT + (args or IMAGE_CMD)
        argv = [pm.rewrite(expand(str(a), env)) for a in argv]
        return self._resolve_argv(argv, path)

    def _container_setup(
        self, c: ContainerState, pod: Obj
    ) -> tuple[dict[str, str], PathMap, dict[str, str], str]:
        assert self.volumes is not None
        view = self._pod_view(pod)
        cache = ObjectCache(self.ctx.kube, self.namespace)
        env = container_env(view, c.spec, cache, self.ctx.node_allocatable, base=self._service_env())
        cdir = self._container_dir(c)
        cdir.mkdir(parents=True, exist_ok=True)
        pm = self.volumes.path_map(c.spec, env, cdir)
        proc_env = self._base_env(pod)
        proc_env.update({k: pm.rewrite(v) for k, v in env.items()})
        workdir = c.spec.get("workingDir")
        cwd = pm.to_host(str(workdir)) if workdir else str(cdir / "workdir")
        Path(cwd).mkdir(parents=True, exist_ok=True)
        return env, pm, proc_env, cwd

    def _start(self, c: ContainerState, now: float) -> None:
        pod = self.pod
        assert pod is not None and self.pod_dir is not None
        c.restart_at = None
        try:
            env, pm, proc_env, cwd = self._container_setup(c, pod)
        except (ConfigError, VolumeError) as exc:
            c.waiting = ("CreateContainerConfigError", str(exc))
            c.restart_at = now + 2.0
            self._event_once(pod, "Failed", f"Error: {exc}", warning=True, container=c.name)
            return
        c.waiting = None
        c.env, c.path_map, c.cwd = proc_env, pm, cwd
        argv = self._command(c, env, pm, proc_env["PATH"])
        if c.run is not None:
            c.last_termination = c.run.terminated()
            c.restart_count += 1
        cdir = self._container_dir(c)
        term = cdir / "termination-log"
        term.write_bytes(b"")
        log_path = cdir / f"{c.restart_count}.log"
        for old in cdir.glob("*.log"):
            if old.stem.isdigit() and int(old.stem) < c.restart_count - 1:
                old.unlink(missing_ok=True)
        started_at = now_rfc3339()
        container_id = f"mlkube://{self.uid[:8]}-{c.name}-{c.restart_count}"
        try:
            with log_path.open("ab") as out:
                proc = subprocess.Popen(
                    argv,
                    cwd=cwd,
                    env=proc_env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                    close_fds=True,
                )
        except OSError as exc:
            c.run = Run(
                pid=0,
                ticks=0,
                container_id=container_id,
                started_at=started_at,
                started_wall=time.time(),
                log_path=str(log_path),
                exit_code=128,
                finished_at=started_at,
                reason="StartError",
                message=f"failed to start container process {argv[0]!r}: {exc}",
            )
            self._event("Failed", f"Error: {c.run.message}", True, c.name)
            self._after_exit(c, 128, now)
            self._save()
            return
        c.proc = proc
        ticks = procs.start_ticks(proc.pid) or 0
        c.run = Run(
            pid=proc.pid,
            ticks=ticks,
            container_id=container_id,
            started_at=started_at,
            started_wall=time.time(),
            log_path=str(log_path),
        )
        record = procs.ProcessRecord(
            name=f"{self.namespace}/{self.name}/{c.name}", pid=proc.pid, start_ticks=ticks, argv=argv
        )
        (cdir / "process.json").write_text(record.to_json())

        def wait() -> None:
            proc.wait()
            self.wake()

        threading.Thread(target=wait, name=f"wait-{proc.pid}", daemon=True).start()
        c.started = "startupProbe" not in c.spec
        self._init_probes(c)
        log.info(
            "pod %s/%s: started container %s pid %d: %s",
            self.namespace,
            self.name,
            c.name,
            proc.pid,
            " ".join(argv),
        )
        self._event("Started", f"Started container {c.name}", False, c.name)
        self._save()

    def _init_probes(self, c: ContainerState) -> None:
        c.ready = False
        c.probes = {}
        mono = time.monotonic()
        for kind in ("startupProbe", "livenessProbe", "readinessProbe"):
            if c.spec.get(kind) and not (c.init and not c.sidecar):
                c.probes[kind] = ProbeState.new(kind, c.spec[kind], mono)
        if "readinessProbe" not in c.probes:
            c.ready = c.started

    def _kill(self, c: ContainerState, grace: float, why: str) -> None:
        if not c.running or c.kill_deadline is not None:
            return
        assert c.run is not None
        self._event("Killing", f"Stopping container {c.name}: {why}", False, c.name)
        procs.signal_group(c.run.pid, signal.SIGTERM)
        c.kill_deadline = time.monotonic() + grace

    def _kill_overdue(self, now: float) -> None:
        for c in self.containers:
            if c.running and c.kill_deadline is not None and now >= c.kill_deadline:
                assert c.run is not None
                procs.signal_group(c.run.pid, signal.SIGKILL)

    # ---- probes -----------------------------------------------------------------------

    def _exec_runner(self, c: ContainerState) -> Callable[[Sequence[str], float], int]:
        def run(command: Sequence[str], timeout: float) -> int:
            pm = c.path_map or PathMap()
            argv = self._resolve_argv([pm.rewrite(expand(a, c.env)) for a in command], c.env.get("PATH", ""))
            try:
                done = subprocess.run(
                    argv,
                    cwd=c.cwd or None,
                    env=c.env,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    timeout=timeout,
                    check=False,
                    start_new_session=True,
                )
            except subprocess.TimeoutExpired:
                return -1
            except OSError:
                return 127
            return done.returncode

        return run

    def _run_probes(self, now: float) -> None:
        if self.terminating or self.ip is None:
            return
        for c in self.containers:
            if not c.running or c.kill_deadline is not None:
                continue
            startup = c.probes.get("startupProbe")
            if startup is not None and not c.started:
                if now >= startup.next_due:
                    ok, msg = run_probe(startup.spec, c.spec, self.ip, self._exec_runner(c), startup.timeout)
                    startup.record(ok, msg, time.monotonic())
                    if ok and startup.result:
                        c.started = True
                        if "readinessProbe" not in c.probes:
                            c.ready = True
                    elif not ok and startup.failures >= startup.failure_threshold:
                        self._event("Unhealthy", f"Startup probe failed: {msg}", True, c.name)
                        self._kill(c, self._probe_grace(startup), "failed startup probe, will be restarted")
                continue
            live = c.probes.get("livenessProbe")
            if live is not None and now >= live.next_due:
                ok, msg = run_probe(live.spec, c.spec, self.ip, self._exec_runner(c), live.timeout)
                live.record(ok, msg, time.monotonic())
                if not ok:
                    if live.failures == 1:
                        self._event("Unhealthy", f"Liveness probe failed: {msg}", True, c.name)
                    if live.failures >= live.failure_threshold:
                        self._kill(c, self._probe_grace(live), "failed liveness probe, will be restarted")
                        continue
            ready = c.probes.get("readinessProbe")
            if ready is not None and now >= ready.next_due:
                ok, msg = run_probe(ready.spec, c.spec, self.ip, self._exec_runner(c), ready.timeout)
                result = ready.record(ok, msg, time.monotonic())
                c.ready = bool(result)
                if not ok and ready.failures == ready.failure_threshold:
                    self._event("Unhealthy", f"Readiness probe failed: {msg}", True, c.name)

    def _probe_grace(self, probe: ProbeState) -> float:
        g = probe.spec.get("terminationGracePeriodSeconds")
        if g is None:
            g = (self.pod or {}).get("spec", {}).get("terminationGracePeriodSeconds", 30)
        return float(g if g is not None else 30)

    # ---- deletion -----------------------------------------------------------------------

    def _sync_terminating(self, pod: Obj) -> float:
        now = time.monotonic()
        if self.delete_requested:
            return 30.0
        if not self.terminating:
            self.terminating = True
            meta = pod["metadata"]
            grace = meta.get("deletionGracePeriodSeconds")
            if grace is None:
                grace = pod.get("spec", {}).get("terminationGracePeriodSeconds", 30)
            self.term_deadline = now + float(grace or 0)
            self._ensure_containers(pod)
            for c in self.containers:
                if c.running:
                    self._pre_stop(c)
            for c in self.containers:
                if c.running:
                    assert c.run is not None
                    self._event("Killing", f"Stopping container {c.name}", False, c.name)
                    procs.signal_group(c.run.pid, signal.SIGTERM)
        self._collect_exits(now)
        alive = [c for c in self.containers if c.running]
        if alive and time.monotonic() < self.term_deadline:
            self._push_status()
            return max(0.05, self.term_deadline - time.monotonic())
        for c in alive:
            assert c.run is not None
            procs.signal_group(c.run.pid, signal.SIGKILL)
        end = time.monotonic() + 5
        while any(c.running for c in self.containers) and time.monotonic() < end:
            for c in self.containers:
                if c.proc is not None:
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        c.proc.wait(timeout=0.1)
            self._collect_exits(time.monotonic())
        if self.prepared or any(c.run is not None for c in self.containers):
            self._push_status()
        try:
            self.ctx.kube.delete(
                ns_path(self.namespace, "pods", self.name),
                {
                    "apiVersion": "v1",
                    "kind": "DeleteOptions",
                    "gracePeriodSeconds": 0,
                    "preconditions": {"uid": self.uid},
                },
            )
        except ApiError as exc:
            if exc.status != 409:
                raise
        self.delete_requested = True
        return 30.0

    def _pre_stop(self, c: ContainerState) -> None:
        hook = (c.spec.get("lifecycle") or {}).get("preStop")
        if not hook or self.ip is None:
            return
        remaining = max(0.0, self.term_deadline - time.monotonic())
        try:
            if "sleep" in hook:
                time.sleep(min(float(hook["sleep"].get("seconds", 0)), remaining))
            elif "exec" in hook:
                self._exec_runner(c)(list(hook["exec"].get("command") or []), remaining)
            elif "httpGet" in hook:
                get = hook["httpGet"]
                port = get.get("port")
                url = f"{str(get.get('scheme', 'HTTP')).lower()}://{get.get('host') or self.ip}:{port}{get.get('path', '/')}"
                with contextlib.suppress(OSError), urllib.request.urlopen(url, timeout=max(remaining, 0.1)):
                    pass
        except Exception as exc:
            self._event("FailedPreStopHook", f"PreStopHook failed: {exc}", True, c.name)

    def _teardown(self) -> None:
        for c in self.containers:
            if c.running:
                assert c.run is not None
                procs.signal_group(c.run.pid, signal.SIGKILL)
        # A pod restored from disk whose API object is gone: its processes were never adopted.
        for saved in getattr(self, "_saved_containers", {}).values():
            run = saved.get("run") or {}
            if run.get("pid") and procs.pid_alive(int(run["pid"]), int(run.get("ticks", 0))):
                procs.signal_group(int(run["pid"]), signal.SIGKILL)
        self.ctx.release_ip(self.uid)
        if self.pod_dir is not None:
            shutil.rmtree(self.pod_dir, ignore_errors=True)
        self.ctx.forget(self.uid)
        log.info("pod %s/%s (%s): cleaned up", self.namespace, self.name, self.uid)

    def kill_all(self, grace: float) -> None:
        """Used at kubelet shutdown: stop every process of this pod, keep its state on disk."""
        runs = [c.run for c in self.containers if c.running and c.run is not None]
        for run in runs:
            procs.signal_group(run.pid, signal.SIGTERM)
        end = time.monotonic() + grace
        for c in self.containers:
            if c.proc is not None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    c.proc.wait(timeout=max(0.0, end - time.monotonic()))
        for run in runs:
            procs.signal_group(run.pid, signal.SIGKILL)

    # ---- status -----------------------------------------------------------------------

    def _phase(self) -> str:
        if any(
            c.init and not c.sidecar and c.done and (c.run is None or c.run.exit_code != 0)
            for c in self.containers
        ):
            return "Failed"
        if not self._initialized():
            return "Pending"
        main = [c for c in self.containers if not c.init]
        running = sum(1 for c in main if c.running)
        waiting = sum(1 for c in main if c.run is None)
        stopped = sum(1 for c in main if c.run is not None and not c.running)
        succeeded = sum(1 for c in main if c.run is not None and not c.running and c.run.exit_code == 0)
        if waiting > 0:
            return "Pending"
        if running > 0:
            return "Running"
        if stopped > 0:
            if self.terminating:
                return "Succeeded" if stopped == succeeded else "Failed"
            policy = str((self.pod or {}).get("spec", {}).get("restartPolicy") or "Always")
            if policy == "Always":
                return "Running"
            if policy == "OnFailure":
                return "Succeeded" if stopped == succeeded else "Running"
            return "Succeeded" if stopped == succeeded else "Failed"
        return "Pending"

    def _initialized(self) -> bool:
        for c in self.containers:
            if not c.init:
                continue
            if c.sidecar:
                if not (c.running and c.started):
                    return False
            elif not (c.done and c.run is not None and c.run.exit_code == 0):
                return False
        return True

    def _condition(self, ctype: str, ok: bool, reason: str = "", message: str = "") -> Obj:
        status = "True" if ok else "False"
        prev = self._cond_times.get(ctype)
        if prev is None or prev[0] != status:
            prev = (status, now_rfc3339())
            self._cond_times[ctype] = prev
        cond: Obj = {"type": ctype, "status": status, "lastProbeTime": None, "lastTransitionTime": prev[1]}
        if reason:
            cond["reason"] = reason
        if message:
            cond["message"] = message
        return cond

    def _container_status(self, c: ContainerState, pod_initialized: bool) -> Obj:
        st: Obj = {
            "name": c.name,
            "image": c.spec.get("image", ""),
            "imageID": "" if self._refused else image_id(),
            "ready": c.ready and c.running,
            "started": c.running and c.started,
            "restartCount": c.restart_count,
        }
        last: Obj = {"terminated": c.last_termination} if c.last_termination else {}
        state: Obj
        if c.run is not None:
            st["containerID"] = c.run.container_id
            if c.running:
                state = {"running": {"startedAt": c.run.started_at}}
            elif c.done or self.terminating:
                state = {"terminated": c.run.terminated()}
            else:
                delay = max(0.0, (c.restart_at or 0) - time.monotonic())
                state = {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {round(delay)}s restarting failed container={c.name} "
                        f"pod={self.name}_{self.namespace}({self.uid})",
                    }
                }
                last = {"terminated": c.run.terminated()}
        elif c.waiting is not None:
            state = {"waiting": {"reason": c.waiting[0], "message": c.waiting[1]}}
        else:
            reason = "PodInitializing" if not c.init and not pod_initialized else "ContainerCreating"
            state = {"waiting": {"reason": reason}}
        st["state"] = state
        st["lastState"] = last
        return st

    def _status(self) -> Obj:
        pod = self.pod or {}
        phase = self._phase()
        initialized = self._initialized()
        main = [c for c in self.containers if not c.init]
        inits = [c for c in self.containers if c.init]
        terminal = phase in TERMINAL
        unready = [c.name for c in main if not (c.ready and c.running)]
        gates = [g.get("conditionType") for g in pod.get("spec", {}).get("readinessGates") or []]
        current = {c.get("type"): c.get("status") for c in pod.get("status", {}).get("conditions") or []}
        gates_ok = all(current.get(g) == "True" for g in gates)
        conditions = [
            self._condition("PodReadyToStartContainers", self.prepared and not terminal),
        ]
        if initialized:
            conditions.append(self._condition("Initialized", True))
        else:
            pending = [c.name for c in inits if not (c.done and c.run is not None and c.run.exit_code == 0)]
            conditions.append(
                self._condition(
                    "Initialized",
                    False,
                    "ContainersNotInitialized",
                    f"containers with incomplete status: [{' '.join(pending)}]",
                )
            )
        if terminal:
            conditions.append(self._condition("ContainersReady", False, "PodCompleted"))
            conditions.append(self._condition("Ready", False, "PodCompleted"))
        elif unready:
            msg = f"containers with unready status: [{' '.join(unready)}]"
            conditions.append(self._condition("ContainersReady", False, "ContainersNotReady", msg))
            conditions.append(self._condition("Ready", False, "ContainersNotReady", msg))
        elif not gates_ok:
            conditions.append(self._condition("ContainersReady", True))
            conditions.append(
                self._condition("Ready", False, "ReadinessGatesNotReady", "readiness gates not ready")
            )
        else:
            conditions.append(self._condition("ContainersReady", True))
            conditions.append(self._condition("Ready", True))
        status: Obj = {
            "phase": phase,
            "conditions": conditions,
            "hostIP": "127.0.0.1",
            "hostIPs": [{"ip": "127.0.0.1"}],
            "containerStatuses": [self._container_status(c, initialized) for c in main],
        }
        if self.start_time:
            status["startTime"] = self.start_time
        if self.ip:
            status["podIP"] = self.ip
            status["podIPs"] = [{"ip": self.ip}]
        if inits:
            status["initContainerStatuses"] = [self._container_status(c, initialized) for c in inits]
        return status

    def _push_status(self) -> None:
        if self.pod is None:
            return
        status = self._status()
        if status == self._last_status:
            return
        try:
            self.ctx.kube.patch(
                ns_path(self.namespace, "pods", self.name) + "/status",
                {"metadata": {"uid": self.uid}, "status": status},
                kind=PATCH_STRATEGIC,
            )
        except ApiError as exc:
            if exc.status in (404, 409):
                log.info("pod %s/%s: gone while updating status (%s)", self.namespace, self.name, exc.status)
                return
            raise
        self._last_status = status
        if status["phase"] in TERMINAL and not self.terminal_reported and not self.terminating:
            self.terminal_reported = True
            self._save()
            log.info("pod %s/%s: %s", self.namespace, self.name, status["phase"])

    def _next_wake(self) -> float:
        now = time.monotonic()
        due: list[float] = [now + 10.0]
        for c in self.containers:
            if c.restart_at is not None and not c.running:
                due.append(c.restart_at)
            if c.kill_deadline is not None and c.running:
                due.append(c.kill_deadline)
            if c.running:
                due.extend(p.next_due for p in c.probes.values())
        if self.volumes is not None:
            refresh = self.volumes.next_token_refresh()
            if refresh is not None:
                due.append(now + max(0.0, refresh - time.time()))
        return max(0.0, min(due) - now)

    # ---- events -----------------------------------------------------------------------

    def _event(self, reason: str, message: str, warning: bool, container: str = "") -> None:
        if self.pod is not None:
            self.ctx.event(self.pod, reason, message, warning=warning, container=container)

    def _event_once(self, pod: Obj, reason: str, message: str, *, warning: bool, container: str = "") -> None:
        key = (reason, message)
        if key in self._events_sent:
            return
        self._events_sent.add(key)
        self.ctx.event(pod, reason, message, warning=warning, container=container)


def load_saved(pods_dir: Path) -> dict[str, Obj]:
    """uid -> saved worker state, for every pod directory a previous kubelet left."""
    saved: dict[str, Obj] = {}
    for state_file in pods_dir.glob("*/state.json"):
        with contextlib.suppress(OSError, ValueError):
            data = json.loads(state_file.read_text())
            saved[str(data["uid"])] = data
    return saved


def orphan_dirs(pods_dir: Path, known: set[str]) -> list[Path]:
    return [d for d in pods_dir.iterdir() if d.is_dir() and d.name.rsplit("_", 1)[-1] not in known]
