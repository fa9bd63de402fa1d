"""A small JSON-in, JSON-out Kubernetes API client for the dev cluster's own processes.

The local kubelet and the dev provisioner handle Pods, Nodes, Leases and volumes as
plain dicts: they copy fields between objects, build status patches and stream watches.
The generated `kubernetes` client would deserialize every event into model objects and
back, which costs time on the path from pod creation to Running and loses fields the
client does not know. Talking HTTP through urllib3 (which the `kubernetes` package
already brings) keeps that path short and explicit.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import urllib3

from .pki import Pki

log = logging.getLogger("mlkube.devcluster")

Obj = dict[str, Any]

PATCH_MERGE = "application/merge-patch+json"
PATCH_STRATEGIC = "application/strategic-merge-patch+json"
PATCH_APPLY = "application/apply-patch+yaml"


class ApiError(Exception):
    def __init__(self, status: int, method: str, path: str, body: str) -> None:
        self.status = status
        self.body = body
        try:
            self.status_obj: Obj = json.loads(body)
        except ValueError:
            self.status_obj = {}
        reason = self.status_obj.get("message") or body[:300]
        super().__init__(f"{method} {path}: HTTP {status}: {reason}")

    @property
    def reason(self) -> str:
        return str(self.status_obj.get("reason", ""))


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_micro() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class Kube:
    def __init__(self, server: str, ca_file: Path, cert_file: Path, key_file: Path) -> None:
        self.server = server.rstrip("/")
        self._pool = urllib3.PoolManager(
            num_pools=2,
            maxsize=32,
            block=False,
            cert_reqs="CERT_REQUIRED",
            ca_certs=str(ca_file),
            cert_file=str(cert_file),
            key_file=str(key_file),
            retries=False,
        )

    @classmethod
    def admin(cls, server: str, pki: Pki) -> Kube:
        return cls(server, pki.ca_cert, pki.admin_cert, pki.admin_key)

    def _url(self, path: str, query: Mapping[str, Any] | None) -> str:
        url = self.server + path
        if query:
            q = {
                k: (str(v).lower() if isinstance(v, bool) else str(v))
                for k, v in query.items()
                if v is not None
            }
            if q:
                url += "?" + urlencode(q)
        return url

    def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        query: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> Any:
        headers = {"Accept": "application/json"}
        data: bytes | None = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            headers["Content-Type"] = content_type
        resp = self._pool.request(
            method,
            self._url(path, query),
            body=data,
            headers=headers,
            timeout=urllib3.Timeout(connect=5.0, read=timeout),
        )
        text = resp.data.decode("utf-8", errors="replace")
        if resp.status >= 400:
            raise ApiError(resp.status, method, path, text)
        if not text:
            return None
        try:
            return json.loads(text)
        except ValueError:
            return text

    def get(self, path: str, **query: Any) -> Obj:
        result: Obj = self.request("GET", path, query=query)
        return result

    def get_or_none(self, path: str) -> Obj | None:
        try:
            return self.get(path)
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def create(self, path: str, obj: Obj, **query: Any) -> Obj:
        result: Obj = self.request("POST", path, body=obj, query=query)
        return result

    def patch(self, path: str, body: Any, *, kind: str = PATCH_MERGE, **query: Any) -> Obj:
        result: Obj = self.request("PATCH", path, body=body, content_type=kind, query=query)
        return result

    def delete(self, path: str, body: Obj | None = None, **query: Any) -> Obj | None:
        try:
            result: Obj | None = self.request("DELETE", path, body=body, query=query)
            return result
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise

    def ready(self) -> bool:
        try:
            resp = self._pool.request(
                "GET", self.server + "/readyz", timeout=urllib3.Timeout(connect=1.0, read=3.0)
            )
        except urllib3.exceptions.HTTPError:
            return False
        return resp.status == 200

    def watch(
        self, path: str, resource_version: str, timeout_seconds: int = 290, **query: Any
    ) -> Iterator[Obj]:
        """Stream watch events (`{"type": ..., "object": ...}`) until the server ends the watch."""
        q = dict(query)
        q.update(
            watch="true",
            resourceVersion=resource_version,
            timeoutSeconds=timeout_seconds,
            allowWatchBookmarks="true",
        )
        resp = self._pool.request(
            "GET",
            self._url(path, q),
            headers={"Accept": "application/json"},
            preload_content=False,
            timeout=urllib3.Timeout(connect=5.0, read=timeout_seconds + 30),
        )
        try:
            if resp.status >= 400:
                raise ApiError(resp.status, "WATCH", path, resp.read().decode("utf-8", errors="replace"))
            buf = b""
            for chunk in resp.stream(65536, decode_content=True):
                buf += chunk
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    if line.strip():
                        yield json.loads(line)
            if buf.strip():
                yield json.loads(buf)
        finally:
            resp.release_conn()


def secret_value(secret: Obj, key: str) -> bytes | None:
    data = secret.get("data") or {}
    if key in data:
        return base64.b64decode(data[key])
    string_data = secret.get("stringData") or {}
    if key in string_data:
        return str(string_data[key]).encode()
    return None


def configmap_value(cm: Obj, key: str) -> bytes | None:
    data = cm.get("data") or {}
    if key in data:
        return str(data[key]).encode()
    binary = cm.get("binaryData") or {}
    if key in binary:
        return base64.b64decode(binary[key])
    return None


def ns_path(namespace: str, resource: str, name: str | None = None, *, core: bool = True) -> str:
    base = "/api/v1" if core else ""
    p = f"{base}/namespaces/{quote(namespace)}/{resource}"
    return p if name is None else f"{p}/{quote(name)}"


class Informer:
    """List, then watch from the list's resourceVersion, forever; relist when the watch expires.

    `on_list` receives the full set after each (re)list so the owner can reconcile what
    it missed; `on_event` receives each ADDED/MODIFIED/DELETED event.
    """

    def __init__(
        self,
        kube: Kube,
        path: str,
        *,
        on_event: Callable[[str, Obj], None],
        on_list: Callable[[list[Obj]], None],
        query: Mapping[str, Any] | None = None,
        name: str = "informer",
        stop: threading.Event | None = None,
    ) -> None:
        self.kube = kube
        self.path = path
        self.on_event = on_event
        self.on_list = on_list
        self.query = dict(query or {})
        self.name = name
        self.stop = stop or threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        backoff = 0.2
        while not self.stop.is_set():
            try:
                listing = self.kube.get(self.path, **self.query)
                rv = str(listing["metadata"].get("resourceVersion", ""))
                self.on_list(list(listing.get("items") or []))
                backoff = 0.2
                while not self.stop.is_set():
                    expired = False
                    for event in self.kube.watch(self.path, rv, **self.query):
                        etype = event.get("type", "")
                        obj = event.get("object") or {}
                        if etype == "ERROR":
                            if obj.get("code") == 410:
                                expired = True
                                break
                            raise RuntimeError(f"watch error: {obj}")
                        rv = str(obj.get("metadata", {}).get("resourceVersion", rv))
                        if etype == "BOOKMARK":
                            continue
                        self.on_event(etype, obj)
                    if expired:
                        break
            except Exception as exc:
                if self.stop.is_set():
                    return
                log.warning("%s: %s; relisting in %.1fs", self.name, exc, backoff)
                time.sleep(backoff)
                backoff = min(backoff * 2, 5.0)
