"""Deterministic child names and labels.

A child's name is a function of its parent and the parent's generation, so a
restarted operator finds the Job it created instead of creating a second one, and
a new generation gets a new Job while the old one (and its result) stays.
"""

from __future__ import annotations

import hashlib

from .. import constants as C

_MAX = 63  # Job names end up in the batch.kubernetes.io/job-name label value.


def child_name(parent: str, suffix: str) -> str:
    name = f"{parent}-{suffix}"
    if len(name) <= _MAX:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    keep = _MAX - len(suffix) - len(digest) - 2
    return f"{parent[:keep].rstrip('-')}-{digest}-{suffix}"


def labels(instance: str, component: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    out = {
        C.LABEL_NAME: "mlkube",
        C.LABEL_INSTANCE: instance,
        C.LABEL_COMPONENT: component,
        C.LABEL_PART_OF: C.PART_OF,
        C.LABEL_MANAGED_BY: C.MANAGED_BY,
    }
    out.update(extra or {})
    return out


def owner_reference(api_version: str, kind: str, name: str, uid: str) -> dict[str, object]:
    return {
        "apiVersion": api_version,
        "kind": kind,
        "name": name,
        "uid": uid,
        "controller": True,
        "blockOwnerDeletion": True,
    }
