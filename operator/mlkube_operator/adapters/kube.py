"""Kubernetes API access for the operator: read, server-side apply children, write status.

Every child (Job, Deployment, Service, PVC, retrain TrainingRun) is written by one
call, `apply`: a server-side apply (`PATCH application/apply-patch+yaml`) under the
field manager `mlkube-operator`, with `force` (the operator's desired state wins over
a hand edit of a field it manages) and `fieldValidation=Strict` (a misspelled field is
a 422, not silently dropped). The API server merges: fields the operator stops
setting are removed from the live object, fields others set and the operator does
not are left alone, and applying what is already there writes nothing.

Responses are read raw (`_preload_content=False`) so callers get the exact camelCase
JSON the API server sent, the same shape the planners and kubectl see. Failures are
classified once, in `errors.classify`, into an error that names the call.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

from .. import constants as C
from ..errors import Call, Conflict, classify
from ..reconcile.storage import build_artifact_pvc
from ..settings import Settings
from . import client

JSON = dict[str, Any]
log = logging.getLogger(__name__)

APPLY_CONTENT_TYPE = "application/apply-patch+yaml"
# (apiVersion, kind) -> (API group, plural) of every kind `apply` writes. An apply that
# creates the object needs RBAC `create` as well as `patch` (tests/unit/test_manifests.py).
APPLIED: dict[tuple[str, str], tuple[str, str]] = {
    ("batch/v1", "Job"): ("batch", "jobs"),
    ("apps/v1", "Deployment"): ("apps", "deployments"),
    ("v1", "Service"): ("", "services"),
    ("v1", "PersistentVolumeClaim"): ("", "persistentvolumeclaims"),
    (C.API_VERSION, "TrainingRun"): (C.GROUP, "trainingruns"),
}


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
    def _call(call: Call, fn: Any, *args: Any, **kwargs: Any) -> JSON | None:
        """Call an API method raw: the body, or None on 404; 409 is a Conflict, the rest an ApiError."""
        try:
            response = fn(*args, _preload_content=False, **kwargs)
        except ApiException as err:
            if err.status == 404:
                return None
            raise classify(call, int(err.status or 0), _answer(err)) from err
        except (HTTPError, OSError) as err:
            raise classify(call, 0, f"cannot reach the API server: {err}") from err
        data: JSON | None = json.loads(response.data) if response.data else None
        return data

    # -- reads -----------------------------------------------------------------------------

    def get_custom(self, plural: str, namespace: str, name: str) -> JSON | None:
        return self._call(
            Call("get", f"{plural}.{C.GROUP}", namespace, name),
            self.custom.get_namespaced_custom_object,
            C.GROUP,
            C.VERSION,
            namespace,
            plural,
            name,
        )

    def list_custom(self, plural: str, namespace: str) -> list[JSON]:
        data = self._call(
            Call("list", f"{plural}.{C.GROUP}", namespace, ""),
            self.custom.list_namespaced_custom_object,
            C.GROUP,
            C.VERSION,
            namespace,
            plural,
        )
        return list((data or {}).get("items") or [])

    def namespace_labels(self, name: str) -> dict[str, str] | None:
        """The labels of a Namespace (None when it does not exist)."""
        data = self._call(Call("get", "namespaces", "", name), self.core.read_namespace, name)
        if data is None:
            return None
        return dict((data.get("metadata") or {}).get("labels") or {})

    def namespace_annotations(self, name: str) -> dict[str, str] | None:
        """The annotations of a Namespace (None when it does not exist)."""
        data = self._call(Call("get", "namespaces", "", name), self.core.read_namespace, name)
        if data is None:
            return None
        return dict((data.get("metadata") or {}).get("annotations") or {})

    def get_job(self, namespace: str, name: str) -> JSON | None:
        return self._call(
            Call("get", "jobs.batch", namespace, name), self.batch.read_namespaced_job, name, namespace
        )

    def list_pods(self, namespace: str, selector: str) -> list[JSON]:
        data = self._call(
            Call("list", "pods", namespace, f"-l {selector}"),
            self.core.list_namespaced_pod,
            namespace,
            label_selector=selector,
        )
        return list((data or {}).get("items") or [])

    def job_pods(self, namespace: str, job_name: str) -> list[JSON]:
        return self.list_pods(namespace, f"{C.JOB_NAME_LABEL}={job_name}")

    def secret_keys(self, namespace: str, name: str) -> frozenset[str] | None:
        """The key names of a Secret (None: no such Secret). Its values are dropped at once:
        the operator only checks that what a pod will read exists (reconcile/secrets.py)."""
        secret = self._call(
            Call("get", "secrets", namespace, name), self.core.read_namespaced_secret, name, namespace
        )
        if secret is None:
            return None
        return frozenset((secret.get("data") or {}).keys()) | frozenset(
            (secret.get("stringData") or {}).keys()
        )

    def get_deployment(self, namespace: str, name: str) -> JSON | None:
        return self._call(
            Call("get", "deployments.apps", namespace, name),
            self.apps.read_namespaced_deployment,
            name,
            namespace,
        )

    # -- writes ----------------------------------------------------------------------------

    def apply(self, body: JSON, *, dry_run: bool = False) -> JSON:
        """Server-side apply `body` (a whole desired object) and return the live object.

        The one way the operator writes a child. Applying an object that is already as
        desired is a no-op on the server (no new resourceVersion, no rollout).
        """
        meta = body["metadata"]
        resource, patch = self._patcher(str(body["apiVersion"]), str(body["kind"]))
        options: JSON = {
            "field_manager": C.FIELD_MANAGER,
            "force": True,
            "field_validation": "Strict",
            "_content_type": APPLY_CONTENT_TYPE,
        }
        if dry_run:
            options["dry_run"] = "All"
        call = Call("apply", resource, meta["namespace"], meta["name"])
        live = self._call(call, patch, meta["name"], meta["namespace"], body, **options)
        if live is None:  # 404 on apply: the namespace is gone
            raise classify(call, 404, "not found (namespace deleted?)")
        log.debug("Applied %s %s/%s", body["kind"], meta["namespace"], meta["name"])
        return live

    def _patcher(self, api_version: str, kind: str) -> tuple[str, Callable[..., Any]]:
        """(resource name for messages, the typed PATCH method) of a kind the operator writes."""
        if (api_version, kind) not in APPLIED:
            raise ValueError(f"the operator does not write {kind} ({api_version})")
        group, plural = APPLIED[(api_version, kind)]
        resource = f"{plural}.{group}" if group else plural
        if group == C.GROUP:

            def patch_custom(name: str, namespace: str, body: JSON, **kwargs: Any) -> Any:
                return self.custom.patch_namespaced_custom_object(
                    C.GROUP, C.VERSION, namespace, plural, name, body, **kwargs
                )

            return resource, patch_custom
        typed = {
            "jobs": self.batch.patch_namespaced_job,
            "deployments": self.apps.patch_namespaced_deployment,
            "services": self.core.patch_namespaced_service,
            "persistentvolumeclaims": self.core.patch_namespaced_persistent_volume_claim,
        }
        return resource, typed[plural]

    def patch_status(self, plural: str, obj: JSON, status: JSON) -> None:
        """Write the whole status, guarded by the resourceVersion it was computed from.

        A reconcile that started from a stale copy gets 409 (a Conflict) instead of
        overwriting what a newer reconcile wrote; the write that made it stale has
        already triggered a fresh reconcile. A deleted object needs no status.
        """
        meta = obj["metadata"]
        body = {"metadata": {"resourceVersion": meta["resourceVersion"]}, "status": status}
        call = Call("patch", f"{plural}/status.{C.GROUP}", meta["namespace"], meta["name"])
        try:
            self._call(
                call,
                self.custom.patch_namespaced_custom_object_status,
                C.GROUP,
                C.VERSION,
                meta["namespace"],
                plural,
                meta["name"],
                body,
            )
        except Conflict as err:
            raise Conflict(f"{plural}/{meta['name']} changed meanwhile; reconciling again", delay=1) from err

    def delete_deployment(self, namespace: str, name: str) -> None:
        """Delete a Deployment and, in the foreground, its pods; gone already is fine."""
        body = {"propagationPolicy": "Foreground"}
        self._call(
            Call("delete", "deployments.apps", namespace, name),
            self.apps.delete_namespaced_deployment,
            name,
            namespace,
            body=body,
        )
        log.info("Deleted Deployment %s/%s", namespace, name)

    def ensure_artifact_pvc(self, namespace: str, settings: Settings) -> None:
        """The namespace's artifact store: applied when missing, never changed or deleted by us.

        Unlike the other children it is not re-applied: its access modes and storage
        class are immutable and its size may only grow, so re-applying would undo (or
        fail on) an administrator's resize. Nothing to do when the artifacts live in
        object storage (MLKUBE_ARTIFACT_STORE).
        """
        if settings.object_store:
            return
        call = Call("get", "persistentvolumeclaims", namespace, settings.artifact_pvc)
        if self._call(
            call, self.core.read_namespaced_persistent_volume_claim, settings.artifact_pvc, namespace
        ):
            return
        self.apply(build_artifact_pvc(namespace, settings))


def _answer(err: ApiException) -> str:
    """The server's message (`Status.message`), else the HTTP reason."""
    try:
        return str(json.loads(err.body or "{}").get("message") or err.reason)
    except ValueError:
        return str(err.reason)
