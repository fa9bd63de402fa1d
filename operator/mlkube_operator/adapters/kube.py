"""Kubernetes API access for the operator: get, list, create (409 is success), patch status.

Responses are read raw (`_preload_content=False`) so callers get the exact camelCase
JSON the API server sent, the same shape the planners and kubectl see.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .. import constants as C
from ..errors import Conflict, TemporaryFailure, classify_http
from ..reconcile.naming import labels
from ..settings import Settings
from . import client

JSON = dict[str, Any]
log = logging.getLogger(__name__)


class Kube:
    def __init__(self, api_client: kubernetes.client.ApiClient) -> None:
        self.api = api_client
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.batch = kubernetes.client.BatchV1Api(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.apps = kubernetes.client.AppsV1Api(api_client)

    @classmethod
    def connect(cls) -> Kube:
        """In-cluster credentials when running in a pod, else the kubeconfig (KUBECONFIG); requests counted."""
        return cls(client.connect())

    @staticmethod
    def _raw(fn: Any, *args: Any, **kwargs: Any) -> tuple[int, JSON | None]:
        """Call an API method raw: (200, body) or (404 | 409, None); other failures raise, classified."""
        try:
            response = fn(*args, _preload_content=False, **kwargs)
        except ApiException as err:
            if err.status in (404, 409):
                return int(err.status), None
            raise classify_http(err.status, _reason(err)) from err
        except (HTTPError, OSError) as err:
            raise TemporaryFailure(f"cannot reach the API server: {err}") from err
        data: JSON | None = json.loads(response.data) if response.data else None
        return 200, data

    def _call(self, fn: Any, *args: Any, **kwargs: Any) -> JSON | None:
        """Call an API method raw; None on 404."""
        code, data = self._raw(fn, *args, **kwargs)
        if code == 409:
            raise Conflict(f"conflict calling {getattr(fn, '__name__', fn)}", delay=1)
        return data

    def get_custom(self, plural: str, namespace: str, name: str) -> JSON | None:
        return self._call(
            self.custom.get_namespaced_custom_object, C.GROUP, C.VERSION, namespace, plural, name
        )

    def list_custom(self, plural: str, namespace: str) -> list[JSON]:
        data = self._call(self.custom.list_namespaced_custom_object, C.GROUP, C.VERSION, namespace, plural)
        return list((data or {}).get("items") or [])

    def create_custom(self, plural: str, body: JSON) -> bool:
        """Create an mlkube resource; False when it already exists."""
        return self._create(
            lambda namespace, obj, **kw: self.custom.create_namespaced_custom_object(
                C.GROUP, C.VERSION, namespace, plural, obj, **kw
            ),
            body,
        )

    def patch_status(self, plural: str, obj: JSON, status: JSON) -> None:
        """Write the whole status, guarded by the resourceVersion it was computed from.

        A reconcile that started from a stale copy gets 409 (a Conflict) instead of
        overwriting what a newer reconcile wrote; the write that made it stale has
        already triggered a fresh reconcile. A deleted object needs no status.
        """
        meta = obj["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
        code, _ = self._raw(
            self.custom.patch_namespaced_custom_object_status,
            C.GROUP,
            C.VERSION,
            meta["namespace"],
            plural,
            meta["name"],
            body,
        )
        if code == 409:
            raise Conflict(f"{plural}/{meta['name']} changed meanwhile; reconciling again", delay=1)

    def get_job(self, namespace: str, name: str) -> JSON | None:
        return self._call(self.batch.read_namespaced_job, name, namespace)

    def list_pods(self, namespace: str, selector: str) -> list[JSON]:
        data = self._call(self.core.list_namespaced_pod, namespace, label_selector=selector)
        return list((data or {}).get("items") or [])

    def job_pods(self, namespace: str, job_name: str) -> list[JSON]:
        return self.list_pods(namespace, f"{C.JOB_NAME_LABEL}={job_name}")

    def create_job(self, body: JSON) -> bool:
        """Create a Job; False when it already exists (a restart or a concurrent reconcile)."""
        return self._create(self.batch.create_namespaced_job, body)

    def get_deployment(self, namespace: str, name: str) -> JSON | None:
        return self._call(self.apps.read_namespaced_deployment, name, namespace)

    def create_deployment(self, body: JSON) -> bool:
        return self._create(self.apps.create_namespaced_deployment, body)

    def update_deployment(self, body: JSON) -> None:
        """Replace labels, annotations and spec; the API server starts a rolling update if the template changed."""
        meta = body["metadata"]
        patch = {
            "metadata": {"labels": meta["labels"], "annotations": meta["annotations"]},
            "spec": body["spec"],
        }
        self._call(self.apps.patch_namespaced_deployment, meta["name"], meta["namespace"], patch)
        log.info("Updated Deployment %s/%s", meta["namespace"], meta["name"])

    def delete_deployment(self, namespace: str, name: str) -> None:
        """Delete a Deployment and, in the foreground, its pods; gone already is fine."""
        body = {"propagationPolicy": "Foreground"}
        self._call(self.apps.delete_namespaced_deployment, name, namespace, body=body)
        log.info("Deleted Deployment %s/%s", namespace, name)

    def ensure_service(self, body: JSON) -> None:
        meta = body["metadata"]
        if self._call(self.core.read_namespaced_service, meta["name"], meta["namespace"]) is None:
            self._create(self.core.create_namespaced_service, body)

    def ensure_artifact_pvc(self, namespace: str, settings: Settings) -> None:
        """The namespace's artifact store; shared by every mlkube resource there, never deleted by us."""
        body: JSON = {
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {
                "name": settings.artifact_pvc,
                "namespace": namespace,
                "labels": labels("artifacts", "artifact-store"),
            },
            "spec": {
                "accessModes": [settings.artifact_access_mode],
                "resources": {"requests": {"storage": settings.artifact_size}},
            },
        }
        if settings.artifact_storage_class:
            body["spec"]["storageClassName"] = settings.artifact_storage_class
        if (
            self._call(self.core.read_namespaced_persistent_volume_claim, settings.artifact_pvc, namespace)
            is None
        ):
            self._create(self.core.create_namespaced_persistent_volume_claim, body)

    def _create(self, fn: Any, body: JSON) -> bool:
        meta = body["metadata"]
        code, _ = self._raw(fn, meta["namespace"], body)
        if code == 409:
            log.info("%s %s/%s already exists", body["kind"], meta["namespace"], meta["name"])
            return False
        log.info("Created %s %s/%s", body["kind"], meta["namespace"], meta["name"])
        return True


def _reason(err: ApiException) -> str:
    try:
        return str(json.loads(err.body or "{}").get("message") or err.reason)
    except ValueError:
        return str(err.reason)
