"""The operator process: `mlkube operator` (or `python -m mlkube_operator`).

It replaces a bare `kopf run` so that several replicas can run and exactly one
reconciles (kopf has no leader election):

1. serve `/healthz`, `/readyz`, `/leader` on `MLKUBE_HEALTH_PORT` and `/metrics` on
   `MLKUBE_METRICS_PORT` at once, leader or not;
2. as a standby, try to acquire the Lease (`adapters.leader`) every retry period;
3. once leader, start kopf's handlers (`mlkube_operator.handlers`) and keep renewing;
4. a leader that cannot renew for `renew deadline`, or that finds another holder,
   exits at once with status 75 (`LOST_LEASE_EXIT`): in-flight handlers die with the
   process, nothing half-done is written afterwards, and Kubernetes restarts the
   container as a fresh standby. A watchdog thread enforces the deadline even if the
   event loop is stuck. Restarting is simpler and safer than un-starting kopf's
   watchers, timers and thread pools in place (controller-runtime does the same);
5. on SIGTERM (rolling update, drain) the leader stops kopf, then releases the Lease
   (empty holder) so a standby takes over within one retry period instead of waiting
   for the lease to expire.

Both leader and standby are Ready (`/readyz` 200 once the API server answered a Lease
round within the lease duration): a standby is a healthy replica ready to take over,
and with a PodDisruptionBudget of `minAvailable: 1` a drain may evict either replica
but never both. `/leader` (200 only on the leader) and the `mlkube_operator_leader`
gauge tell them apart.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from . import observability as obs
from .settings import Settings

if TYPE_CHECKING:
    from aiohttp import web

    from .adapters.leader import LeaseElector

log = logging.getLogger("mlkube_operator.main")

LOST_LEASE_EXIT = 75  # EX_TEMPFAIL: the container restarts as a standby
SERVICE_ACCOUNT_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")


@dataclass
class State:
    """What the endpoints report; written by the election loop only."""

    identity: str
    lease_duration: float
    leader: bool = False
    holder: str = ""
    last_contact: float | None = None  # monotonic time the API server last answered a Lease round
    last_renew: float = field(default_factory=time.monotonic)

    def ready(self) -> bool:
        return self.last_contact is not None and time.monotonic() - self.last_contact < self.lease_duration

    def describe(self) -> dict[str, object]:
        return {
            "role": "leader" if self.leader else "standby",
            "identity": self.identity,
            "holder": self.holder,
            "ready": self.ready(),
        }


def default_identity() -> str:
    """Pod name (or host name) plus a random suffix: a restarted process is a new candidate."""
    return f"{os.environ.get('POD_NAME') or socket.gethostname()}_{uuid.uuid4().hex[:8]}"


def lease_namespace(settings: Settings) -> str:
    if settings.leader_lease_namespace:
        return settings.leader_lease_namespace
    try:
        return SERVICE_ACCOUNT_NAMESPACE.read_text().strip() or "default"
    except OSError:
        return "default"


class QuietFilter(logging.Filter):
    """Drop kopf's "Handler 'x' succeeded." / "Timer 'x' succeeded." lines: one per event or tick.

    Steady state is then silent; failures, retries and what the handlers themselves log stay.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.levelno == logging.INFO
            and record.name.startswith("kopf")
            and isinstance(record.msg, str)
            and record.msg.endswith(" succeeded.")
        )


def configure_logging(settings: Settings, verbose: bool = False) -> None:
    import kopf

    log_format = kopf.LogFormat.JSON if settings.log_format == "json" else kopf.LogFormat.FULL
    logging.getLogger().handlers.clear()  # one handler, kopf's, whoever configured logging before
    kopf.configure(verbose=verbose, log_format=log_format, log_refkey="object")
    if not verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(QuietFilter())
    for noisy in ("urllib3", "kubernetes"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


async def serve_health(state: State, settings: Settings) -> web.AppRunner:
    """/healthz (the process and its event loop run), /readyz (see module doc), /leader."""
    from aiohttp import web

    def answer(ok: bool) -> web.Response:
        return web.Response(
            status=200 if ok else 503, text=json.dumps(state.describe()), content_type="application/json"
        )

    async def healthz(_: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def readyz(_: web.Request) -> web.Response:
        return answer(state.ready())

    async def leader(_: web.Request) -> web.Response:
        return answer(state.leader)

    app = web.Application()
    app.add_routes([web.get("/healthz", healthz), web.get("/readyz", readyz), web.get("/leader", leader)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, settings.bind_address, settings.health_port).start()
    return runner


def start_metrics(settings: Settings) -> None:
    from prometheus_client import start_http_server

    start_http_server(settings.metrics_port, settings.bind_address, registry=obs.REGISTRY)


def _lost(why: str) -> None:
    """Stop acting at once: no handler may write anything after this."""
    obs.leader.set(0)
    sys.stderr.write(f"mlkube operator: lost the leader Lease ({why}); exiting with {LOST_LEASE_EXIT}\n")
    sys.stderr.flush()
    os._exit(LOST_LEASE_EXIT)


def _watchdog(state: State, renew_deadline: float, stopped: threading.Event) -> None:
    """Independent of the event loop: a leader that has not renewed in time exits."""
    while not stopped.wait(0.25):
        if state.leader and time.monotonic() - state.last_renew > renew_deadline:
            _lost(f"not renewed for {renew_deadline:g}s")


def _renew(elector: LeaseElector, state: State, settings: Settings, stopped: threading.Event) -> None:
    """The leader's renewals, on their own thread: a busy event loop never delays them."""
    deadline = settings.leader_renew_deadline_seconds
    while not stopped.wait(settings.leader_retry_period_seconds):
        result = elector.try_acquire_or_renew()
        if stopped.is_set():
            return
        now = time.monotonic()
        if result.reached:
            state.last_contact = now
        if result.leader:
            state.last_renew = now
        elif result.reached and result.holder and result.holder != state.identity:
            _lost(f"{result.holder} holds it")
        elif now - state.last_renew > deadline:
            _lost(f"not renewed for {deadline:g}s")


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)


async def _run_kopf(settings: Settings, stop_flag: asyncio.Event) -> None:
    import kopf

    await kopf.operator(
        standalone=True,
        clusterwide=not settings.namespaces,
        namespaces=list(settings.namespaces),
        stop_flag=stop_flag,
    )


async def run(settings: Settings, identity: str | None = None) -> int:
    # Import (and so register) the handlers before leading: an import is seconds of blocked
    # event loop on a busy node, and a new leader must renew on time from its first second.
    from . import handlers  # noqa: F401
    from .adapters import client
    from .adapters.leader import LeaseElector

    me = identity or default_identity()
    state = State(identity=me, lease_duration=settings.leader_lease_duration_seconds)
    start_metrics(settings)
    runner = await serve_health(state, settings)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    if not settings.leader_election:
        log.info("Leader election is off: this replica reconciles")
        state.leader, state.last_contact = True, time.monotonic()
        obs.set_leader(True)
        await _run_kopf(settings, stop)
        return 0

    namespace = lease_namespace(settings)
    elector = LeaseElector(
        client.connect(),
        namespace,
        settings.leader_lease_name,
        me,
        settings.leader_lease_duration_seconds,
        request_timeout=max(1.0, settings.leader_renew_deadline_seconds / 2),
    )
    # Its own thread: kopf's busy handler threads never delay a renewal.
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="lease")
    log.info("Standing by for Lease %s/%s as %s", namespace, settings.leader_lease_name, me)

    async def round_() -> bool:
        result = await loop.run_in_executor(executor, elector.try_acquire_or_renew)
        if result.reached:
            state.last_contact = time.monotonic()
        state.holder = result.holder or state.holder
        return result.leader

    while not stop.is_set():
        if await round_():
            break
        await _sleep_or_stop(stop, settings.leader_retry_period_seconds)
    if stop.is_set():
        await runner.cleanup()
        return 0

    state.leader, state.last_renew, state.holder = True, time.monotonic(), me
    obs.set_leader(True)
    log.info("Leading: starting the handlers")
    stopped = threading.Event()
    renewer = threading.Thread(
        target=_renew, args=(elector, state, settings, stopped), name="lease-renew", daemon=True
    )
    renewer.start()
    threading.Thread(
        target=_watchdog, args=(state, settings.leader_renew_deadline_seconds, stopped), daemon=True
    ).start()
    kopf_stop = asyncio.Event()
    kopf_task = asyncio.create_task(_run_kopf(settings, kopf_stop))
    stop_task = asyncio.create_task(stop.wait())
    await asyncio.wait({kopf_task, stop_task}, return_when="FIRST_COMPLETED")

    # Stopping (SIGTERM) or kopf ended: stop acting first, then hand the Lease over.
    kopf_stop.set()
    failed = False
    try:
        await asyncio.wait_for(kopf_task, timeout=20)
    except Exception as err:  # kopf itself failed: say so, still hand over
        log.error("kopf stopped with %r", err)
        failed = True
    stop_task.cancel()
    state.leader = False
    obs.set_leader(False)
    stopped.set()
    await loop.run_in_executor(executor, renewer.join, 30)
    await loop.run_in_executor(executor, elector.release)
    executor.shutdown(wait=False)
    await runner.cleanup()
    return 1 if failed else 0


def main(verbose: bool = False) -> int:
    settings = Settings.from_env(os.environ)
    configure_logging(settings, verbose=verbose)
    return asyncio.run(run(settings))
