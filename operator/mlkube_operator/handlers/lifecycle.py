"""Operator start-up: kopf settings and the shared clients every handler uses."""

from __future__ import annotations

import itertools
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, cast

import kopf

from .. import constants as C
from ..adapters.kube import Kube
from ..reconcile.plan import Event
from ..settings import Settings


class RetryForever:
    """kopf error backoffs that never run out: 1, 1, 2, 3, 5, 8, 13, 21, then 30 s forever.

    Re-iterable (kopf iterates it afresh for every request) and unsized (kopf then
    retries without a limit).
    """

    def __iter__(self) -> Iterator[float]:
        return itertools.chain((1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0), itertools.repeat(30.0))


@dataclass
class Runtime:
    kube: Kube
    settings: Settings


_runtime: Runtime | None = None


def runtime() -> Runtime:
    if _runtime is None:
        raise kopf.TemporaryError("operator is still starting", delay=2)
    return _runtime


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, logger: kopf.Logger, **_: Any) -> None:
    global _runtime
    settings.posting.level = logging.INFO
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.persistence.finalizer = f"{C.GROUP}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=C.GROUP)
    settings.persistence.diffbase_storage = kopf.AnnotationsDiffBaseStorage(prefix=C.GROUP)
    settings.execution.max_workers = 8
    # kopf gives up on a request after its error backoffs, and a watch whose list or watch
    # call gave up (e.g. 403 while an RBAC rule is missing) ends for good. Retry forever
    # instead: every failed attempt is logged, and the watch resumes once the call succeeds.
    settings.networking.error_backoffs = RetryForever()
    _runtime = Runtime(kube=Kube.connect(), settings=Settings.from_env(os.environ))
    logger.info(
        "mlkube operator started: trainer image %s, server image %s",
        _runtime.settings.trainer_image,
        _runtime.settings.server_image,
    )


def post_event(obj: dict[str, Any], event: Event) -> None:
    """An Event on the resource `obj` (the API caps messages; keep them readable)."""
    kopf.event(
        kopf.Body(cast(kopf.RawBody, obj)), type=event.type, reason=event.reason, message=event.message[:1000]
    )
