"""Periodic resyncs without kopf timers: one scheduler task for all objects.

kopf's `@kopf.timer` runs one asyncio task per object and handler and puts kopf's
finalizer on every object it times (timers always require one). At 2,000 objects that
is thousands of tasks waking up, a finalizer PATCH per object at start-up, and objects
that cannot be deleted once the operator is gone (`kubectl delete -k manifests/` would
hang on the CRDs). So the periodic work is scheduled here instead:

- `@resync.timer(plural, interval=...)` registers a function with kopf's timer signature
  (`body`, `logger`, ...); kopf does not see it;
- an async watch handler per registered kind keeps the latest body of every object in
  memory (kopf's own watch stream; no API call, no finalizer);
- one task, started by the first watch event, runs each object's functions when due in a small
  thread pool, never two at once for the same object and function. A
  `kopf.TemporaryError` reschedules after its delay; any other failure is logged and
  retried at the next interval, so no object's resync ever stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import kopf

from .. import constants as C
from ..api.dataset import DatasetStatus
from ..api.trainingrun import TrainingRunStatus
from ..reconcile.dataset import is_settled as dataset_settled
from ..reconcile.trainingrun import is_settled as run_settled

log = logging.getLogger("mlkube_operator.resync")
Fn = Callable[..., Any]
Key = tuple[str, str]  # namespace, name


@dataclass
class Registration:
    plural: str
    fn: Fn
    interval: float
    initial_delay: float
    when: Callable[[dict[str, Any]], bool] | None
    due: dict[Key, float] = field(default_factory=dict)
    running: set[Key] = field(default_factory=set)
    retries: dict[Key, int] = field(default_factory=dict)  # consecutive failures, kopf's `retry`


class Scheduler:
    def __init__(
        self, workers: int = 4, registry: kopf.OperatorRegistry | None = None, tick: float = 0.5
    ) -> None:
        self.registry, self.tick = registry, tick
        self.registrations: list[Registration] = []
        self.bodies: dict[str, dict[Key, dict[str, Any]]] = {}
        self.workers = workers
        self._task: asyncio.Task[None] | None = None

    def timer(
        self,
        plural: str,
        interval: float,
        initial_delay: float = 5.0,
        when: Callable[[dict[str, Any]], bool] | None = None,
    ) -> Callable[[Fn], Fn]:
        """Run `fn` every `interval` seconds for each object of `plural` (for which `when(body)` holds)."""

        def register(fn: Fn) -> Fn:
            self.registrations.append(Registration(plural, fn, interval, initial_delay, when))
            if plural not in self.bodies:
                self.bodies[plural] = {}
                kopf.on.event(
                    C.GROUP, C.VERSION, plural, id=f"resync-track-{plural}", registry=self.registry
                )(self._track(plural))
            return fn

        return register

    def _track(self, plural: str) -> Callable[..., Any]:
        async def track(type: str | None, body: kopf.Body, **_: Any) -> None:
            # Started from here, the first watch event, rather than at start-up: the task then
            # inherits kopf's context for processing objects (its Event-posting queue included).
            self.start()
            key = (body.metadata.namespace or "", body.metadata.name or "")
            if type == "DELETED" or body.metadata.get("deletionTimestamp"):
                self.bodies[plural].pop(key, None)
                for reg in self.registrations:
                    if reg.plural == plural:
                        reg.due.pop(key, None)
                        reg.retries.pop(key, None)
                return
            self.bodies[plural][key] = dict(body)
            now = time.monotonic()
            for reg in self.registrations:
                if reg.plural == plural and key not in reg.due:
                    # Spread the first runs over the interval: a restart does not resync everything at once.
                    reg.due[key] = now + reg.initial_delay + random.uniform(0, reg.interval)

        return track

    def _run_one(self, reg: Registration, key: Key, body: dict[str, Any]) -> float:
        """Run one function for one object; the delay until its next run."""
        logger = logging.LoggerAdapter(log, {"object": f"{reg.plural}/{key[0]}/{key[1]}"})
        retry = reg.retries.get(key, 0)
        try:
            reg.fn(body=kopf.Body(body), logger=logger, namespace=key[0], name=key[1], retry=retry)  # type: ignore[arg-type]
        except kopf.TemporaryError as err:
            reg.retries[key] = retry + 1
            delay = float(err.delay) if err.delay is not None else reg.interval
            logger.warning(
                "Resync '%s' failed temporarily for %s %s/%s; retrying in %gs: %s",
                reg.fn.__name__,
                reg.plural,
                key[0],
                key[1],
                delay,
                err,
            )
            return delay
        except Exception:
            reg.retries[key] = retry + 1
            logger.exception(
                "%s %s/%s failed; retrying in %gs", reg.fn.__name__, key[0], key[1], reg.interval
            )
            return reg.interval
        reg.retries.pop(key, None)
        return reg.interval

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        pool = ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="resync")

        async def run(reg: Registration, key: Key, body: dict[str, Any]) -> None:
            try:
                # kopf's context (its Event-posting queue) goes along, as for kopf's own sync handlers.
                context = contextvars.copy_context()
                delay = await loop.run_in_executor(pool, context.run, self._run_one, reg, key, body)
            finally:
                reg.running.discard(key)
            if key in reg.due:
                reg.due[key] = time.monotonic() + delay

        tasks: set[asyncio.Task[None]] = set()
        try:
            while True:
                now = time.monotonic()
                for reg in self.registrations:
                    bodies = self.bodies[reg.plural]
                    for key, due in list(reg.due.items()):
                        if due > now or key in reg.running or key not in bodies:
                            continue
                        if reg.when is not None and not reg.when(bodies[key]):
                            reg.due[key] = now + reg.interval  # nothing to do for it now; look again later
                            continue
                        reg.running.add(key)
                        reg.due[key] = float("inf")  # rescheduled when the run ends
                        task = asyncio.create_task(run(reg, key, bodies[key]))
                        tasks.add(task)
                        task.add_done_callback(tasks.discard)
                await asyncio.sleep(self.tick)
        finally:
            for task in tasks:
                task.cancel()
            pool.shutdown(wait=False, cancel_futures=True)

    def start(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


SCHEDULER = Scheduler()
timer = SCHEDULER.timer


def _generation(body: dict[str, Any]) -> int:
    return int((body.get("metadata") or {}).get("generation") or 0)


def _failing(body: dict[str, Any]) -> bool:
    """The last reconcile failed (`Reconciled=False`): keep retrying until it clears."""
    conditions = (body.get("status") or {}).get("conditions") or []
    return any(c.get("type") == C.RECONCILED and c.get("status") == "False" for c in conditions)


def dataset_in_flight(body: dict[str, Any]) -> bool:
    """A Dataset whose generation has no verdict yet, or that will read its source again
    (a refresh interval, a retry after SourceUnavailable, a re-read running); a settled
    one with no read scheduled has nothing left to do."""
    status = DatasetStatus.model_validate(body.get("status") or {})
    scheduled = status.refreshing or status.next_read_time is not None
    return _failing(body) or scheduled or not dataset_settled(status, _generation(body))


def _run_waiting(status: TrainingRunStatus, generation: int) -> bool:
    cond = next((c for c in status.conditions if c.type == C.SUCCEEDED), None)
    return (
        cond is not None
        and cond.reason == C.REASON_DATASET_NOT_READY
        and status.observed_generation == generation
    )


def run_in_flight(body: dict[str, Any]) -> bool:
    """A TrainingRun with work under way: not settled and not waiting for its Dataset."""
    status = TrainingRunStatus.model_validate(body.get("status") or {})
    generation = _generation(body)
    return _failing(body) or (not run_settled(status, generation) and not _run_waiting(status, generation))


def run_waiting(body: dict[str, Any]) -> bool:
    """A TrainingRun waiting for its Dataset: woken by the Dataset's events; resynced rarely, as a safety net."""
    status = TrainingRunStatus.model_validate(body.get("status") or {})
    return _run_waiting(status, _generation(body))


@kopf.on.cleanup()
async def stop_resync(**_: Any) -> None:
    await SCHEDULER.stop()


def _model_not_ready(body: dict[str, Any]) -> bool:
    status = body.get("status") or {}
    ready = next((c for c in status.get("conditions") or [] if c.get("type") == C.READY), None)
    return (
        ready is not None
        and ready.get("reason") == C.REASON_MODEL_NOT_READY
        and status.get("observedGeneration") == _generation(body)
    )


def deployment_active(body: dict[str, Any]) -> bool:
    """A ModelDeployment with something to serve (or a failure to retry): resynced every 30 s."""
    return _failing(body) or not _model_not_ready(body)


def deployment_waiting(body: dict[str, Any]) -> bool:
    """A ModelDeployment waiting for a model: its TrainingRun's events wake it; resynced rarely."""
    return not deployment_active(body)


def deployment_serving(body: dict[str, Any]) -> bool:
    """A ModelDeployment serving a model: the only ones the monitoring loop can judge."""
    return bool((body.get("status") or {}).get("currentModel"))
