"""Operator start-up: kopf settings and the shared clients every handler uses."""

from __future__ import annotations

import itertools
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import kopf

from .. import constants as C
from ..adapters.kube import Kube
from ..errors import PermanentFailure
from ..reconcile.plan import Event
from ..settings import NamespaceSettingsError, Settings


class RetryForever:
    """kopf error backoffs that never run out: 1, 1, 2, 3, 5, 8, 13, 21, then `cap` s forever
    (each step capped at `cap`).

    Re-iterable (kopf iterates it afresh for every request) and unsized (kopf then
    retries without a limit).
    """

    def __init__(self, cap: float = 30.0) -> None:
        self.cap = cap

    def __iter__(self) -> Iterator[float]:
        steps = (1.0, 1.0, 2.0, 3.0, 5.0, 8.0, 13.0, 21.0)
        return itertools.chain((min(s, self.cap) for s in steps), itertools.repeat(self.cap))


# How long a Namespace's artifact-store annotations are reused before they are read
# again: one GET per namespace per interval, however many objects it holds.
NAMESPACE_SETTINGS_TTL_SECONDS = 30.0


@dataclass
class Runtime:
    kube: Kube
    settings: Settings
    _by_namespace: dict[str, tuple[float, Settings | NamespaceSettingsError]] = field(default_factory=dict)

    def settings_for(self, namespace: str) -> Settings:
        """The settings for objects in `namespace`: the operator's, with the Namespace's
        `mlkube.io/artifact-*` annotations applied (Settings.for_namespace). An invalid
        annotation is a PermanentFailure naming it: the object's Reconciled condition
        says so until the annotation is fixed (read again within the TTL)."""
        now = time.monotonic()
        cached = self._by_namespace.get(namespace)
        if cached is None or cached[0] <= now:
            annotations = self.kube.namespace_annotations(namespace) or {}
            value: Settings | NamespaceSettingsError
            try:
                value = self.settings.for_namespace(annotations)
            except NamespaceSettingsError as err:
                value = err
            cached = (now + NAMESPACE_SETTINGS_TTL_SECONDS, value)
            self._by_namespace[namespace] = cached
        if isinstance(cached[1], NamespaceSettingsError):
            raise PermanentFailure(f"Namespace {namespace}: {cached[1]}")
        return cached[1]


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
    own = Settings.from_env(os.environ)
    settings.networking.error_backoffs = RetryForever(own.api_retry_max_seconds)
    _runtime = Runtime(kube=Kube.connect(), settings=own)
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
