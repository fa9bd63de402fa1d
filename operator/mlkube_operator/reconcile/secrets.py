"""Which Secrets a Job or predictor Deployment reads, and whether they exist (pure).

A pod whose env names a missing Secret (or a missing key of one) never starts: it sits in
`CreateContainerConfigError`, and its owner's status would say "Profiling" or "RollingOut"
forever. So before the operator creates or applies such a child, it reads the Secrets the
child's pod template names (`env[].valueFrom.secretKeyRef`, `envFrom[].secretRef`) and,
when one is missing, creates nothing: the object's `Reconciled` condition says
`SecretNotFound`/`SecretKeyNotFound`, naming the Secret, the key and the spec field it comes
from, and the object is checked again with backoff until the Secret appears.

Only the existence of a Secret and the names of its keys are used; values are never kept,
logged or compared. A reference marked `optional: true` is not required.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from .. import constants as C

JSON = dict[str, Any]

# Where the operator's default artifact credentials come from (no spec field names them).
DEFAULT_ARTIFACT_SECRET = (
    "the artifact store's credentials Secret (operator setting MLKUBE_ARTIFACT_CREDENTIALS_SECRET "
    f"or the Namespace annotation {C.ANNOTATION_ARTIFACT_CREDENTIALS_SECRET})"
)
ARTIFACT_ENV = (C.ENV_ARTIFACT_ACCESS_KEY_ID, C.ENV_ARTIFACT_SECRET_ACCESS_KEY)
SOURCE_FIELDS: Mapping[str, str] = {
    C.ENV_SOURCE_ACCESS_KEY_ID: "spec.source.s3.credentialsSecret",
    C.ENV_SOURCE_SECRET_ACCESS_KEY: "spec.source.s3.credentialsSecret",
    C.ENV_SOURCE_SQL_URL: "spec.source.sql.connectionSecret",
}


@dataclass(frozen=True)
class SecretRef:
    """One Secret key a pod reads (key None: the whole Secret, as envFrom)."""

    name: str
    key: str | None
    field: str


@dataclass(frozen=True)
class SecretProblem:
    reason: str
    message: str


def job_fields() -> dict[str, str]:
    """Spec fields behind the env of a Dataset's or TrainingRun's Job."""
    return {**SOURCE_FIELDS, **dict.fromkeys(ARTIFACT_ENV, DEFAULT_ARTIFACT_SECRET)}


def predictor_fields(credentials_secret_set: bool) -> dict[str, str]:
    """Spec fields behind the env of a ModelDeployment's predictors."""
    field = "spec.model.credentialsSecret" if credentials_secret_set else DEFAULT_ARTIFACT_SECRET
    return dict.fromkeys(ARTIFACT_ENV, field)


def _containers(manifest: JSON) -> Iterator[JSON]:
    pod = ((manifest.get("spec") or {}).get("template") or {}).get("spec") or {}
    yield from pod.get("initContainers") or []
    yield from pod.get("containers") or []


def secret_refs(manifest: JSON, fields: Mapping[str, str]) -> list[SecretRef]:
    """The Secret keys a Job's or Deployment's pods need to start, each with the spec field behind it."""
    refs: list[SecretRef] = []
    for container in _containers(manifest):
        for env in container.get("env") or []:
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if not ref or ref.get("optional"):
                continue
            name = str(env.get("name"))
            field = fields.get(name, f"env {name} of container {container.get('name')}")
            refs.append(SecretRef(str(ref["name"]), str(ref["key"]), field))
        for source in container.get("envFrom") or []:
            ref = source.get("secretRef")
            if ref and not ref.get("optional"):
                refs.append(
                    SecretRef(str(ref["name"]), None, f"envFrom of container {container.get('name')}")
                )
    return list(dict.fromkeys(refs))


def missing_secrets(
    namespace: str, refs: list[SecretRef], found: Mapping[str, frozenset[str] | None]
) -> SecretProblem | None:
    """What is missing among `refs`, given the key names of each Secret (None: no such Secret).

    The reason is SecretNotFound when a whole Secret is missing, else SecretKeyNotFound;
    the message names every missing Secret and key once, with the field it comes from.
    """
    # (Secret, key or None for the whole Secret) -> the fields behind it, in order, once each
    missing: dict[tuple[str, str | None], dict[str, None]] = {}
    for ref in refs:
        keys = found.get(ref.name)
        if keys is None:
            missing.setdefault((ref.name, None), {})[ref.field] = None
        elif ref.key is not None and ref.key not in keys:
            missing.setdefault((ref.name, ref.key), {})[ref.field] = None
    if not missing:
        return None
    absent = any(key is None for _, key in missing)
    parts = [
        f"Secret {namespace}/{name} "
        + ("not found" if key is None else f"has no key {key}")
        + f" ({', '.join(f)})"
        for (name, key), f in sorted(missing.items(), key=lambda item: item[0][1] is not None)
    ]
    reason = C.REASON_SECRET_NOT_FOUND if absent else C.REASON_SECRET_KEY_NOT_FOUND
    return SecretProblem(
        reason, "; ".join(parts) + "; nothing is created until it exists (checked again with backoff)"
    )
