"""The connection: a Kubernetes API client and a namespace, from a kubeconfig or in-cluster.

The only module of the SDK that talks to the API server. Every call is translated: a 404
becomes `NotFound`, a 400/422 (the CRD schema refused a spec) `InvalidSpec`, anything
else `ApiError` with the server's message, so callers never see an `ApiException`.
Objects are written with server-side apply under the field manager `mlkube-sdk`, so
re-running a notebook cell that creates a resource changes nothing when nothing changed.
"""

from __future__ import annotations

import contextlib
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import kubernetes

from mlkube_operator import constants as C
from mlkube_operator.api import Kind

from .errors import ApiError, InvalidSpec, MlkubeError, NotFound

FIELD_MANAGER = "mlkube-sdk"
APPLY = "application/apply-patch+yaml"
SA_NAMESPACE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

JSON = dict[str, Any]


class Session:
    """An API client and the namespace every SDK call works in."""

    def __init__(self, api_client: Any, namespace: str) -> None:
        self.api = api_client
        self.namespace = namespace
        self.custom = kubernetes.client.CustomObjectsApi(api_client)
        self.core = kubernetes.client.CoreV1Api(api_client)
        self.batch = kubernetes.client.BatchV1Api(api_client)

    def __repr__(self) -> str:
        return f"Session(namespace={self.namespace!r}, host={self.api.configuration.host!r})"

    # -- calls ----------------------------------------------------------------------------------

    def call(self, what: tuple[str, str], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run one API call; `what` is (kind, name) for the error messages."""
        try:
            return fn(*args, **kwargs)
        except kubernetes.client.exceptions.ApiException as err:
            raise translate(err, what[0], what[1], self.namespace) from None
        except (OSError, kubernetes.client.exceptions.OpenApiException) as err:
            raise ApiError(str(err), reason="ApiUnreachable", kind=what[0], name=what[1]) from None

    def get(self, kind: Kind, name: str) -> JSON:
        out: JSON = self.call(
            (kind.kind, name),
            self.custom.get_namespaced_custom_object,
            C.GROUP,
            C.VERSION,
            self.namespace,
            kind.plural,
            name,
        )
        return out

    def find(self, kind: Kind, name: str) -> JSON | None:
        try:
            return self.get(kind, name)
        except NotFound:
            return None

    def list_objects(self, kind: Kind) -> list[JSON]:
        out: JSON = self.call(
            (kind.kind, ""),
            self.custom.list_namespaced_custom_object,
            C.GROUP,
            C.VERSION,
            self.namespace,
            kind.plural,
        )
        return list(out.get("items") or [])

    def apply(self, kind: Kind, body: JSON) -> JSON:
        name = body["metadata"]["name"]
        body = {**body, "metadata": {**body["metadata"], "namespace": self.namespace}}
        # Read as plain JSON: the client's deserialiser answers None to an apply-patch PATCH.
        out: JSON = self.raw(
            (kind.kind, name),
            self.custom.patch_namespaced_custom_object,
            C.GROUP,
            C.VERSION,
            self.namespace,
            kind.plural,
            name,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            field_validation="Strict",
            _content_type=APPLY,
        )
        return out

    def apply_configmap(self, name: str, data: dict[str, str], owner: JSON | None = None) -> JSON:
        meta: JSON = {
            "name": name,
            "namespace": self.namespace,
            "labels": {C.LABEL_MANAGED_BY: FIELD_MANAGER},
        }
        if owner is not None:
            meta["ownerReferences"] = [
                {
                    "apiVersion": owner["apiVersion"],
                    "kind": owner["kind"],
                    "name": owner["metadata"]["name"],
                    "uid": owner["metadata"]["uid"],
                }
            ]
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data}
        resp = self.call(
            ("ConfigMap", name),
            self.core.patch_namespaced_config_map,
            name,
            self.namespace,
            body,
            field_manager=FIELD_MANAGER,
            force=True,
            _content_type=APPLY,
            _preload_content=False,
        )
        out: JSON = json.loads(resp.data)
        return out

    def raw(self, what: tuple[str, str], fn: Callable[..., Any], *args: Any, **kwargs: Any) -> JSON:
        """A typed-client call answered as plain JSON (no model objects)."""
        resp = self.call(what, fn, *args, _preload_content=False, **kwargs)
        out: JSON = json.loads(resp.data)
        return out

    def job(self, name: str) -> JSON | None:
        try:
            return self.raw(("Job", name), self.batch.read_namespaced_job_status, name, self.namespace)
        except NotFound:
            return None

    def job_pods(self, job_name: str) -> list[JSON]:
        out = self.raw(
            ("Job", job_name),
            self.core.list_namespaced_pod,
            self.namespace,
            label_selector=f"{C.JOB_NAME_LABEL}={job_name}",
        )
        pods: list[JSON] = out.get("items") or []
        return sorted(pods, key=lambda p: str(p["metadata"].get("creationTimestamp") or ""))

    def pod_log(self, pod: str, container: str | None = None, tail_lines: int | None = None) -> str:
        kwargs: JSON = {}
        if container:
            kwargs["container"] = container
        if tail_lines is not None:
            kwargs["tail_lines"] = tail_lines
        resp = self.call(
            ("Pod", pod),
            self.core.read_namespaced_pod_log,
            pod,
            self.namespace,
            _preload_content=False,
            **kwargs,
        )
        return bytes(resp.data).decode("utf-8", "replace")

    def events(self, kind: str, name: str, uid: str | None = None) -> list[JSON]:
        """The namespace's Events about one object (`uid`: only this incarnation of it)."""
        selector = f"involvedObject.kind={kind},involvedObject.name={name}"
        if uid:
            selector += f",involvedObject.uid={uid}"
        out = self.raw((kind, name), self.core.list_namespaced_event, self.namespace, field_selector=selector)
        items: list[JSON] = out.get("items") or []
        return items

    def job_object(self, name: str) -> JSON:
        return self.raw(("Job", name), self.batch.read_namespaced_job, name, self.namespace)

    def create_pod(self, body: JSON) -> JSON:
        name = body["metadata"]["name"]
        return self.raw(("Pod", name), self.core.create_namespaced_pod, self.namespace, body)

    def pod(self, name: str) -> JSON:
        return self.raw(("Pod", name), self.core.read_namespaced_pod, name, self.namespace)

    def delete_pod(self, name: str) -> None:
        with contextlib.suppress(NotFound):
            self.raw(
                ("Pod", name), self.core.delete_namespaced_pod, name, self.namespace, grace_period_seconds=0
            )

    def service(self, name: str) -> JSON:
        return self.raw(("Service", name), self.core.read_namespaced_service, name, self.namespace)


def translate(err: Any, kind: str, name: str, namespace: str) -> MlkubeError:
    """An ApiException as the SDK's error, with the API server's own message."""
    status = int(getattr(err, "status", 0) or 0)
    message, reason = str(getattr(err, "reason", "") or ""), ""
    try:
        body = json.loads(getattr(err, "body", "") or "{}")
        message = str(body.get("message") or message)
        reason = str(body.get("reason") or "")
    except (ValueError, AttributeError):
        pass
    where = {"kind": kind, "name": name, "namespace": namespace}
    if status == 404:
        return NotFound(
            message or f"{kind} {name!r} not found in namespace {namespace!r}", reason="NotFound", **where
        )
    if status in (400, 422):
        return InvalidSpec(message, reason="InvalidSpec", **where)
    return ApiError(message, status=status, reason=reason or f"HTTP{status}", **where)


# -- the default session --------------------------------------------------------------------------

_default: Session | None = None


def _kubeconfig_namespace(kubeconfig: str | None, context: str | None) -> str | None:
    try:
        contexts, active = kubernetes.config.list_kube_config_contexts(config_file=kubeconfig)  # type: ignore[no-untyped-call]
    except Exception:  # no kubeconfig, or one without contexts
        return None
    chosen = active
    if context:
        chosen = next((c for c in contexts if c.get("name") == context), active)
    ns = ((chosen or {}).get("context") or {}).get("namespace")
    return str(ns) if ns else None


def connect(
    namespace: str | None = None, kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None
) -> Session:
    """Connect, and make this the session every SDK call uses by default.

    With `kubeconfig` (or $KUBECONFIG, or ~/.kube/config) that file's context; inside a pod
    without one, the pod's ServiceAccount. The namespace is `namespace`, else the
    context's, else the pod's, else `default`.
    """
    global _default
    namespace = namespace or os.environ.get("MLKUBE_NAMESPACE") or None
    path = str(kubeconfig) if kubeconfig is not None else os.environ.get("KUBECONFIG")
    home = Path("~/.kube/config").expanduser()
    if path is None and home.exists():
        path = str(home)
    if path is not None:
        api = kubernetes.config.new_client_from_config(config_file=path, context=context)  # type: ignore[no-untyped-call]
        ns = namespace or _kubeconfig_namespace(path, context)
    elif os.environ.get("KUBERNETES_SERVICE_HOST"):
        config = kubernetes.client.Configuration()
        kubernetes.config.load_incluster_config(client_configuration=config)  # type: ignore[no-untyped-call]
        api = kubernetes.client.ApiClient(config)
        ns = namespace or (SA_NAMESPACE.read_text().strip() if SA_NAMESPACE.exists() else None)
    else:
        raise ApiError(
            "no kubeconfig ($KUBECONFIG, ~/.kube/config) and not running in a pod: "
            "call mlkube.connect(kubeconfig=...)",
            reason="NoConfiguration",
        )
    _default = Session(api, ns or "default")
    return _default


def session(given: Session | None = None) -> Session:
    """`given`, else the default session (connecting with the defaults on first use)."""
    if given is not None:
        return given
    return _default if _default is not None else connect()
