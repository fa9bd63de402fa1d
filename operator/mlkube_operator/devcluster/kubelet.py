"""The local kubelet: runs the Pods bound to the dev Node as processes of this environment.

There is no container runtime on the machines mlkube is developed and tested on, but
there is a Python environment with mlkube installed, and mlkube only ever runs its own
image. So the "image" is this environment: a container's command runs as a local
process group, `python` meaning this interpreter and `mlkube` this environment's
console script, and any other image is refused with a clear status. Everything else
a workload can observe (pod IP, env, volumes, probes, restarts, termination messages,
status, deletion) follows the real kubelet, so the operator and its Jobs cannot tell.

Run by `mlkube dev up` as `python -m mlkube_operator.devcluster.kubelet --state-dir DIR`.
It also registers and heartbeats the Node, runs the dev volume provisioner and serves
container logs to the API server.
"""

from __future__ import annotations

import argparse
import itertools
import logging
import os
import shutil
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from .binaries import DEFAULT_K8S_VERSION
from .kube import ApiError, Informer, Kube, Obj, now_rfc3339, ns_path
from .logserver import serve_logs
from .node import NodeAgent, machine_capacity, register_with_retry
from .pki import Pki
from .pods import ContainerState, PodWorker, load_saved, orphan_dirs
from .provisioner import Provisioner
from .state import StateDir

log = logging.getLogger("mlkube.kubelet")


class IpAllocator:
    """127.0.<block>.2 upward, the lowest free address first, reused after deletion."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self._by_uid: dict[str, str] = {}
        self._lock = threading.Lock()

    def reserve(self, uid: str, ip: str) -> None:
        with self._lock:
            self._by_uid[uid] = ip

    def allocate(self, uid: str) -> str:
        with self._lock:
            if uid in self._by_uid:
                return self._by_uid[uid]
            used = set(self._by_uid.values())
            for x in range(2, 255):
                ip = f"{self.prefix}{x}"
                if ip not in used:
                    self._by_uid[uid] = ip
                    return ip
        raise RuntimeError(f"no free pod address left in {self.prefix}0/24")

    def release(self, uid: str) -> None:
        with self._lock:
            self._by_uid.pop(uid, None)


class EventRecorder:
    """Posts core/v1 Events from a queue, so a slow API call never delays a pod."""

    def __init__(self, kube: Kube, node: str) -> None:
        self.kube = kube
        self.node = node
        self._queue: list[Obj] = []
        self._cv = threading.Condition()
        self._seq = itertools.count()
        threading.Thread(target=self._run, name="events", daemon=True).start()

    def emit(
        self, pod: Obj, reason: str, message: str, *, warning: bool = False, container: str = ""
    ) -> None:
        meta = pod["metadata"]
        now = now_rfc3339()
        involved: Obj = {
            "apiVersion": "v1",
            "kind": "Pod",
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta["uid"],
        }
        if container:
            involved["fieldPath"] = f"spec.containers{{{container}}}"
        event = {
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {
                "name": f"{meta['name']}.{time.time_ns():x}{next(self._seq)}",
                "namespace": meta["namespace"],
            },
            "involvedObject": involved,
            "reason": reason,
            "message": message[:1024],
            "type": "Warning" if warning else "Normal",
            "source": {"component": "kubelet", "host": self.node},
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
            "reportingComponent": "kubelet",
            "reportingInstance": self.node,
        }
        with self._cv:
            self._queue.append(event)
            self._cv.notify()

    def _run(self) -> None:
        while True:
            with self._cv:
                while not self._queue:
                    self._cv.wait()
                event = self._queue.pop(0)
            try:
                self.kube.create(ns_path(event["metadata"]["namespace"], "events"), event)
            except Exception as exc:
                log.debug("event not recorded: %s", exc)


class Kubelet:
    def __init__(self, state: StateDir, version: str) -> None:
        self.state = state
        self.cfg = state.load_config()
        self.pki = Pki(state.pki)
        self.kube = Kube.admin(self.cfg.apiserver_url, self.pki)
        self.node_name = self.cfg.node_name
        self.pods_dir = state.pods
        self.venv_bin = Path(sys.executable).parent
        self.apiserver_port = self.cfg.ports.apiserver
        self.node_allocatable = machine_capacity(state.root)
        self.stopping = threading.Event()
        self.version = version
        self._ips = IpAllocator(self.cfg.pod_ip_prefix)
        self._workers: dict[str, PodWorker] = {}
        self._lock = threading.Lock()
        self._events = EventRecorder(self.kube, self.node_name)

    # ---- Context for pod workers ------------------------------------------------------------

    def allocate_ip(self, uid: str) -> str:
        return self._ips.allocate(uid)

    def release_ip(self, uid: str) -> None:
        self._ips.release(uid)

    def event(
        self, pod: Obj, reason: str, message: str, *, warning: bool = False, container: str = ""
    ) -> None:
        self._events.emit(pod, reason, message, warning=warning, container=container)

    def forget(self, uid: str) -> None:
        with self._lock:
            self._workers.pop(uid, None)

    # ---- pods -----------------------------------------------------------------------------

    def _restore(self) -> None:
        saved = load_saved(self.pods_dir)
        for uid, data in saved.items():
            worker = PodWorker(self, uid, None, restored=data)
            if worker.ip and worker.ip != "127.0.0.1":
                self._ips.reserve(uid, worker.ip)
            self._workers[uid] = worker
        for d in orphan_dirs(self.pods_dir, set(saved)):
            log.info("Removing leftover pod directory %s", d)
            shutil.rmtree(d, ignore_errors=True)
        if saved:
            log.info("Found %d pods from a previous run", len(saved))

    def _upsert(self, pod: Obj) -> None:
        uid = str(pod["metadata"]["uid"])
        with self._lock:
            worker = self._workers.get(uid)
            if worker is None:
                worker = PodWorker(self, uid, pod)
                self._workers[uid] = worker
                worker.start()
                return
        if not worker.thread.is_alive() and worker.thread.ident is None:
            worker.pod = pod
            worker._adopt_identity(pod)
            worker.start()
        else:
            worker.update(pod)

    def on_pod_list(self, items: list[Obj]) -> None:
        uids = {str(p["metadata"]["uid"]) for p in items}
        with self._lock:
            workers = dict(self._workers)
        for uid, worker in workers.items():
            if uid not in uids:
                worker.mark_gone()
                if worker.thread.ident is None:
                    worker.start()
        for pod in items:
            self._upsert(pod)

    def on_pod_event(self, etype: str, pod: Obj) -> None:
        uid = str(pod["metadata"]["uid"])
        if etype == "DELETED":
            with self._lock:
                worker = self._workers.get(uid)
            if worker is not None:
                worker.mark_gone()
            return
        self._upsert(pod)

    def locate_logs(self, namespace: str, pod: str, container: str) -> tuple[Path | None, Callable[[], bool]]:
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            if w.namespace == namespace and w.name == pod and w.pod_dir is not None:
                cstate = next((c for c in w.containers if c.name == container), None)

                def running(cs: ContainerState | None = cstate) -> bool:
                    return cs is not None and cs.running

                return w.pod_dir / "containers" / container, running
        return None, lambda: False

    # ---- lifecycle ------------------------------------------------------------------------

    def run(self) -> None:
        agent = NodeAgent(
            self.kube, self.node_name, self.cfg.ports.kubelet, self.node_allocatable, self.version
        )
        register_with_retry(agent, self.stopping)
        threading.Thread(
            target=agent.run_heartbeats, args=(self.stopping,), name="heartbeat", daemon=True
        ).start()
        provisioner = Provisioner(self.kube, self.state.volumes, self.stopping)
        try:
            provisioner.ensure_storage_class()
        except ApiError as exc:
            log.warning("could not create the default StorageClass: %s", exc)
        provisioner.start()
        try:
            serve_logs(self.cfg.ports.kubelet, self.pki, self.locate_logs)
        except OSError as exc:
            log.warning("log endpoint unavailable (kubectl logs will not work): %s", exc)
        self._restore()
        Informer(
            self.kube,
            "/api/v1/pods",
            query={"fieldSelector": f"spec.nodeName={self.node_name}"},
            on_event=self.on_pod_event,
            on_list=self.on_pod_list,
            name="pod-informer",
            stop=self.stopping,
        ).start()
        log.info("Kubelet for node %s running pods from %s", self.node_name, self.pods_dir)
        # Tells `mlkube dev up` that this process (not a previous one) registered the node.
        ready = self.state.run / "kubelet.ready"
        ready.with_suffix(".tmp").write_text(str(os.getpid()))
        ready.with_suffix(".tmp").replace(ready)
        self.stopping.wait()
        self.shutdown()

    def shutdown(self) -> None:
        with self._lock:
            workers = list(self._workers.values())
        for w in workers:
            w.wake()
        threads = []
        for w in workers:
            t = threading.Thread(target=w.kill_all, args=(5.0,), daemon=True)
            t.start()
            threads.append(t)
        for t in threads:
            t.join(10)
        log.info("Kubelet stopped; %d pods' processes stopped", len(workers))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mlkube-dev-kubelet", description=__doc__)
    parser.add_argument("--state-dir", required=True, type=Path)
    parser.add_argument("--kubelet-version", default=DEFAULT_K8S_VERSION)
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    kubelet = Kubelet(StateDir(args.state_dir), args.kubelet_version)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        log.info("Received signal %d: stopping", signum)
        kubelet.stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    kubelet.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
