"""The per-namespace artifact store's PersistentVolumeClaim (pure).

Shared by every mlkube resource of the namespace, so it has no owner and outlives
them; the adapter applies it only when it is missing (see `Kube.ensure_artifact_pvc`).
"""

from __future__ import annotations

from typing import Any

from ..settings import Settings
from .naming import labels

JSON = dict[str, Any]


def build_artifact_pvc(namespace: str, settings: Settings) -> JSON:
    spec: JSON = {
        "accessModes": [settings.artifact_access_mode],
        "resources": {"requests": {"storage": settings.artifact_size}},
    }
    if settings.artifact_storage_class:
        spec["storageClassName"] = settings.artifact_storage_class
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": settings.artifact_pvc,
            "namespace": namespace,
            "labels": labels("artifacts", "artifact-store"),
        },
        "spec": spec,
    }
