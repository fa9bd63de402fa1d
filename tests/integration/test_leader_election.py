"""Leader election on a real API server: the Lease elector in-process, then two operator processes.

The in-process tests give each elector its own clock (the elector measures expiry on its
own monotonic clock, never by comparing timestamps across machines), so expiry is
reached without sleeping; everything else — reads, guarded writes, 409s — is the real
API server. The process tests run `python -m mlkube_operator` twice, scoped to the
test's namespace, kill -9 or freeze the leader and watch the other take over.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import kubernetes
import pytest

from mlkube_operator.adapters.leader import LeaseElector
from mlkube_operator.main import LOST_LEASE_EXIT

from .helpers import wait_for
from .operator_proc import OperatorProcess, scoped_env

pytestmark = [pytest.mark.cluster, pytest.mark.host_operator]
LEASE = "mlkube-operator"


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def make(api: Any, namespace: str, identity: str, clock: Clock, duration: float = 15) -> LeaseElector:
    return LeaseElector(api, namespace, LEASE, identity, duration, request_timeout=10, clock=clock)


def lease(api: Any, namespace: str) -> dict[str, Any]:
    coordination = kubernetes.client.CoordinationV1Api(api)
    return json.loads(coordination.read_namespaced_lease(LEASE, namespace, _preload_content=False).data)


def test_first_candidate_leads_and_the_other_takes_over_only_after_expiry(
    dev_cluster: Any, namespace: str
) -> None:
    api = dev_cluster.api_client
    ca, cb = Clock(), Clock()
    a, b = make(api, namespace, "a", ca), make(api, namespace, "b", cb)
    assert a.try_acquire_or_renew().leader
    first = b.try_acquire_or_renew()
    assert (first.leader, first.holder, first.reached) == (False, "a", True)
    # While a renews, b never takes over, however long it has been waiting in total.
    for _ in range(4):
        cb.t += 10
        assert a.try_acquire_or_renew().leader
        assert not b.try_acquire_or_renew().leader
    # a stops renewing (crashed): b waits a full lease duration from the last change it saw.
    cb.t += 14
    assert not b.try_acquire_or_renew().leader
    cb.t += 1.5
    took = b.try_acquire_or_renew()
    assert took.leader and took.holder == "b"
    spec = lease(api, namespace)["spec"]
    assert (
        spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1 and spec["leaseDurationSeconds"] == 15
    )
    # a comes back: it is told who leads and does not lead.
    back = a.try_acquire_or_renew()
    assert (back.leader, back.holder) == (False, "b")


def test_released_lease_is_taken_at_once(dev_cluster: Any, namespace: str) -> None:
    api = dev_cluster.api_client
    a, b = make(api, namespace, "a", Clock()), make(api, namespace, "b", Clock())
    assert a.try_acquire_or_renew().leader
    assert not b.try_acquire_or_renew().leader
    assert a.release()
    assert lease(api, namespace)["spec"]["holderIdentity"] == ""
    assert b.try_acquire_or_renew().leader
    assert not a.release()  # not the holder any more: nothing to release


def test_racing_candidates_elect_exactly_one(dev_cluster: Any, namespace: str) -> None:
    api = dev_cluster.api_client
    clocks = [Clock() for _ in range(6)]
    electors = [make(api, namespace, f"c{i}", clock) for i, clock in enumerate(clocks)]

    def race(candidates: list[LeaseElector]) -> list[bool]:
        barrier = threading.Barrier(len(candidates))
        results: list[bool] = [False] * len(candidates)

        def go(i: int) -> None:
            barrier.wait()
            results[i] = candidates[i].try_acquire_or_renew().leader

        threads = [threading.Thread(target=go, args=(i,)) for i in range(len(candidates))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        return results

    # No Lease yet: everyone creates, one create wins.
    won = race(electors)
    assert sum(won) == 1
    leader = electors[won.index(True)]
    # The leader dies; every other candidate has seen the record and its lease expires for all of them.
    rest = [e for e in electors if e is not leader]
    for e in rest:
        assert not e.try_acquire_or_renew().leader
    for clock in clocks:
        clock.t += 16
    won = race(rest)
    assert sum(won) == 1
    assert lease(api, namespace)["spec"]["holderIdentity"] == rest[won.index(True)].identity


# --- two operator processes -------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def probe(port: int, path: str) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except OSError:
        return 0


class Replica:
    """`mlkube operator` as a host process watching only `namespace`, its Lease there."""

    def __init__(
        self, dev_cluster: Any, namespace: str, log_dir: Path, name: str, env: dict[str, str] | None = None
    ) -> None:
        self.health, self.metrics = free_port(), free_port()
        self.proc = OperatorProcess(
            dev_cluster.kubeconfig,
            log_dir,
            env={
                **scoped_env(namespace),
                **(env or {}),
                "MLKUBE_HEALTH_PORT": str(self.health),
                "MLKUBE_METRICS_PORT": str(self.metrics),
                "POD_NAME": name,
            },
            argv=[sys.executable, "-m", "mlkube_operator"],
            name=name,
        )

    def leads(self) -> bool:
        return probe(self.health, "/leader") == 200

    def ready(self) -> bool:
        return probe(self.health, "/readyz") == 200


@pytest.fixture
def replicas(dev_cluster: Any, namespace: str, tmp_path: Path) -> Any:
    made = [Replica(dev_cluster, namespace, tmp_path, name) for name in ("replica-a", "replica-b")]
    yield made
    for r in made:
        if r.proc.proc is not None and r.proc.proc.poll() is None:
            os.killpg(r.proc.proc.pid, signal.SIGCONT)
        r.proc.stop()


class Sampler:
    """Polls both replicas' /leader; records any moment at which both claimed to lead."""

    def __init__(self, replicas: list[Replica]) -> None:
        self.replicas, self.both, self.samples = replicas, 0, 0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self) -> None:
        deadline = time.monotonic() + 240
        while not self.stop.is_set() and time.monotonic() < deadline:
            if all(r.leads() for r in self.replicas):
                self.both += 1
            self.samples += 1
            time.sleep(0.05)

    def close(self) -> None:
        self.stop.set()
        self.thread.join(10)


def test_kill_9_the_leader_the_standby_takes_over(
    replicas: list[Replica], dev_cluster: Any, namespace: str
) -> None:
    a, b = replicas
    a.proc.start()
    wait_for(a.leads, 90, "replica a to lead", interval=0.2)
    b.proc.start()
    wait_for(b.ready, 90, "replica b to be ready as a standby", interval=0.2)
    assert not b.leads()
    sampler = Sampler([a, b])
    try:
        time.sleep(3)  # a few renewals with both running
        killed = time.monotonic()
        a.proc.kill()
        wait_for(b.leads, 60, "replica b to take over", interval=0.05)
        takeover = time.monotonic() - killed
    finally:
        sampler.close()
    print(f"\ntakeover after kill -9: {takeover:.1f}s (lease duration 15s, retry period 2s)")
    assert sampler.both == 0 and sampler.samples > 20
    # Safety: b waited for the lease to expire (15 s after a's last renewal, which was at most
    # one retry period before the kill) rather than grabbing a lease that was still held.
    assert takeover >= 15 - 2 - 0.5
    spec = lease(dev_cluster.api_client, namespace)["spec"]
    assert spec["holderIdentity"].startswith("replica-b_") and spec["leaseTransitions"] == 1

    # A graceful stop (SIGTERM, as in a rolling update) hands the Lease over within a retry period.
    a.proc.start()
    wait_for(a.ready, 90, "replica a to be back as a standby", interval=0.2)
    assert not a.leads()
    stopping = time.monotonic()
    b.proc.stop()
    wait_for(a.leads, 30, "replica a to take over after b released the Lease", interval=0.05)
    handover = time.monotonic() - stopping
    print(f"handover after SIGTERM: {handover:.1f}s")
    assert b.proc.proc is not None and b.proc.proc.returncode == 0, b.proc.logs()[-3000:]
    assert handover < 15  # released, not expired


def test_a_frozen_leader_that_lost_the_lease_exits_at_once(replicas: list[Replica]) -> None:
    a, b = replicas
    a.proc.start()
    wait_for(a.leads, 90, "replica a to lead", interval=0.2)
    b.proc.start()
    wait_for(b.ready, 90, "replica b to be ready as a standby", interval=0.2)
    assert a.proc.proc is not None
    os.killpg(a.proc.proc.pid, signal.SIGSTOP)  # a partition, a long GC pause, a frozen node
    wait_for(b.leads, 60, "replica b to take over from the frozen leader", interval=0.1)
    os.killpg(a.proc.proc.pid, signal.SIGCONT)
    code = a.proc.proc.wait(timeout=15)
    assert code == LOST_LEASE_EXIT, a.proc.logs()[-3000:]
    assert "lost the leader Lease" in a.proc.logs()
    assert b.leads()
