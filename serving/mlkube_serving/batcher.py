"""Adaptive micro-batching: many concurrent requests, one ``predict`` call.

A scikit-learn ``predict`` costs mostly per call, not per row: input validation, and
for a forest a Python-level loop over the trees, take the same few milliseconds for one
row as for a hundred.  So the server queues the rows of concurrent requests and runs
them through one call, then hands each request its own slice.

The wait is adaptive rather than fixed.  The worker never sleeps on a timer when it is
alone: it yields to the event loop one iteration at a time and stops gathering as soon
as an iteration brings no new request (or ``max_wait`` passes, or the batch is full).
Under load the natural back-pressure does the rest: requests that arrive while a batch
is being predicted form the next batch.  A request that finds the server idle (nothing
else in flight, and it did not arrive on the heels of the previous answer) skips the
queue altogether and is predicted in place.

Predicts that are expected to be slow (cost model fitted at warm-up and kept current)
run on one worker thread, so the event loop keeps accepting, parsing and answering
while a forest walks its trees; cheap predicts run inline, because on one core a
thread hand-off would cost more than the predict itself.  Only one batch is predicted at
a time; the model is never called concurrently.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .codec import Matrix
from .errors import RequestError
from .metrics import ServingMetrics
from .model import Prediction, ServedModel

log = logging.getLogger("mlkube_serving.batcher")

# A request that finds the server idle is predicted in place if that is expected to take
# less than this: a thread hand-off costs 0.1-0.3 ms on one core and there is nobody else
# to serve meanwhile.  Longer ones still go to the worker thread, so a huge lone request
# cannot stall health checks and scrapes.
LONE_INLINE_MAX_S = 0.020


class PredictFailed(Exception):
    """The model raised on input that passed validation (a server-side problem)."""


@dataclass
class _Job:
    x: Matrix
    want_proba: bool
    future: asyncio.Future[Prediction]
    submitted: float
    rows: int = field(init=False)

    def __post_init__(self) -> None:
        self.rows = len(self.x)


def _slice(pred: Prediction, start: int, stop: int) -> Prediction:
    return Prediction(
        pred.values[start:stop],
        None if pred.class_index is None else pred.class_index[start:stop],
        None if pred.proba is None else pred.proba[start:stop],
    )


class MicroBatcher:
    def __init__(
        self,
        model: ServedModel,
        metrics: ServingMetrics,
        *,
        max_requests: int,
        max_rows: int,
        max_wait_s: float,
        offload_threshold_s: float,
        direct: bool = True,
    ) -> None:
        self.model = model
        self.allow_direct = direct
        self.metrics = metrics
        self.max_requests = max_requests
        self.max_rows = max_rows
        self.max_wait_s = max_wait_s
        self.offload_threshold_s = offload_threshold_s
        self._queue: deque[_Job] = deque()
        self._wake: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._busy = False
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="mlkube-predict", initializer=model.prepare_thread
        )
        model.prepare_thread()  # the event loop's thread predicts too
        self.batches = 0
        self.direct = 0

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="mlkube-batcher")

    async def close(self) -> None:
        """Finish every queued request, then stop the worker and its thread."""
        self._closing = True
        self._poke()
        if self._task is not None:
            await self._task
        self._executor.shutdown(wait=True)

    def submit(self, x: Matrix, want_proba: bool, lone: bool = False) -> asyncio.Future[Prediction]:
        """Queue rows for prediction; ``lone`` means the caller found the server otherwise idle."""
        if self._closing:
            raise RequestError(503, "server is shutting down")
        fut: asyncio.Future[Prediction] = asyncio.get_running_loop().create_future()
        job = _Job(x, want_proba, fut, time.perf_counter())
        if (
            lone
            and self.allow_direct
            and not self._busy
            and not self._queue
            and self.model.expected_cost_s(job.rows) <= max(self.offload_threshold_s, LONE_INLINE_MAX_S)
        ):
            # A lone request: answer it right here.  Nothing could join its batch without
            # waiting, and the queue and thread hand-offs would only add latency.
            self.direct += 1
            self._busy = True
            try:
                pred = self.model.predict(x, want_proba or self.metrics.wants_proba)
            except Exception as exc:
                fut.set_exception(_as_request_error(exc))
            else:
                self._finish([job], x, pred)
            finally:
                self._busy = False
            return fut
        self._queue.append(job)
        self._poke()
        return fut

    def _poke(self) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    def _take(self) -> list[_Job]:
        q = self._queue
        batch = [q.popleft()]
        rows = batch[0].rows
        while q and len(batch) < self.max_requests and rows + q[0].rows <= self.max_rows:
            job = q.popleft()
            rows += job.rows
            batch.append(job)
        return batch

    async def _run(self) -> None:
        loop = asyncio.get_running_loop()
        q = self._queue
        while True:
            if not q:
                if self._closing:
                    return
                self._wake = loop.create_future()
                await self._wake
                self._wake = None
                continue
            if self.max_wait_s > 0 and len(q) < self.max_requests:
                # Gather: let requests already being parsed join, one loop iteration at a time.
                deadline = loop.time() + self.max_wait_s
                seen = len(q)
                while True:
                    await asyncio.sleep(0)
                    now = len(q)
                    if now == seen or now >= self.max_requests or loop.time() >= deadline:
                        break
                    seen = now
            batch = self._take()
            self._busy = True
            try:
                await self._execute(batch)
            except Exception:  # never let the worker die; every job must get an answer
                log.exception("batch execution failed")
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(PredictFailed("prediction failed"))
            finally:
                self._busy = False

    async def _predict(self, x: Matrix, want_proba: bool) -> Prediction:
        model = self.model
        rows = len(x)
        t0 = time.perf_counter()
        if model.expected_cost_s(rows) > self.offload_threshold_s:
            loop = asyncio.get_running_loop()
            pred = await loop.run_in_executor(self._executor, model.predict, x, want_proba)
        else:
            pred = model.predict(x, want_proba)
        elapsed = time.perf_counter() - t0
        # Keep the cost model current (the machine may be busier or quieter than at warm-up).
        fixed = max(0.0, elapsed - model.cost_per_row_s * rows)
        model.cost_fixed_s = 0.9 * model.cost_fixed_s + 0.1 * fixed
        return pred

    def _finish(self, batch: list[_Job], x: Matrix, pred: Prediction) -> None:
        self.metrics.observe_batch(x, len(batch), pred.class_index, pred.values, pred.proba)
        start = 0
        for job in batch:
            stop = start + job.rows
            if not job.future.done():
                job.future.set_result(pred if len(batch) == 1 else _slice(pred, start, stop))
            start = stop

    async def _execute(self, batch: list[_Job]) -> None:
        self.batches += 1
        x = batch[0].x if len(batch) == 1 else np.concatenate([job.x for job in batch])
        # The score histogram (prediction drift) needs probabilities for every row.
        want_proba = self.metrics.wants_proba or any(job.want_proba for job in batch)
        try:
            pred = await self._predict(x, want_proba)
        except Exception as exc:
            if len(batch) > 1:
                # Isolate the request the model chokes on; the others still get answers.
                for job in batch:
                    await self._execute([job])
                return
            job = batch[0]
            if not job.future.done():
                job.future.set_exception(_as_request_error(exc))
            return
        self._finish(batch, x, pred)


def _as_request_error(exc: Exception) -> Exception:
    if isinstance(exc, ValueError | TypeError):
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return RequestError(400, f"the model rejected the input: {text[:300]}")
    log.error("predict raised %s", type(exc).__name__, exc_info=exc)
    return PredictFailed(f"prediction failed ({type(exc).__name__})")


__all__: list[Any] = ["MicroBatcher", "PredictFailed"]
