"""The Secret check before a child is created: the I/O half of reconcile/secrets.py.

A Job or predictor whose pods name a missing Secret would sit in CreateContainerConfigError
while its owner's status said Profiling or RollingOut; checking first lets `guard` show the
missing Secret on the owner instead (MissingSecret, retried with backoff).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from typing import Any

from .. import constants as C
from ..errors import ApiError, MissingSecret
from ..reconcile.secrets import missing_secrets, secret_refs
from .lifecycle import runtime

JSON = dict[str, Any]
log = logging.getLogger(__name__)
_warned_unreadable = False  # logged once: the operator may run without RBAC to read Secrets


def require_secrets(namespace: str, manifests: Iterable[JSON | None], fields: Mapping[str, str]) -> None:
    """Raise MissingSecret when a Secret (key) the pods of `manifests` read is missing.

    Called before a Job or predictor Deployment is created or applied, so nothing is
    created that can only sit in CreateContainerConfigError. One GET per Secret named;
    only key names are looked at. Without RBAC to read Secrets the check is skipped (the
    pods then report a missing Secret themselves, as before).
    """
    global _warned_unreadable
    refs = [ref for m in manifests if m is not None for ref in secret_refs(m, fields)]
    if not refs:
        return
    kube = runtime().kube
    found: dict[str, frozenset[str] | None] = {}
    for name in dict.fromkeys(ref.name for ref in refs):
        try:
            found[name] = kube.secret_keys(namespace, name)
        except ApiError as err:
            if err.reason != C.REASON_FORBIDDEN:
                raise
            if not _warned_unreadable:
                log.warning("Secrets are not checked (no RBAC to read them): %s", err)
                _warned_unreadable = True
            return
    problem = missing_secrets(namespace, refs, found)
    if problem is not None:
        raise MissingSecret(problem.reason, problem.message)
