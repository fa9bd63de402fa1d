"""Pod volumes as host directories, and the container-path to host-path map.

Local processes share the host's filesystem, so a container path such as `/artifacts`
cannot be mounted. Instead every volume is materialized as a directory under the pod's
state directory (or, for a PersistentVolumeClaim, the bound PV's hostPath directory),
and each container gets a PathMap from its `mountPath`s (plus its termination-message
path and working directory) to those directories. The kubelet then rewrites, once,
the command, args and env values that start with a mapped container path. Programs
that build paths from their arguments and environment (as mlkube's do) therefore work
unchanged; a path hard-coded inside a program does not, and docs/devcluster.md says so.
"""

from __future__ import annotations

import os
import posixpath
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .envs import ConfigError, ObjectCache, expand, field_value, format_map, resource_value
from .kube import ApiError, Kube, Obj, configmap_value, ns_path, secret_value

DEFAULT_TERMINATION_MESSAGE_PATH = "/dev/termination-log"


class VolumeError(Exception):
    """A volume cannot be set up yet (the kubelet keeps the pod in ContainerCreating)."""


class PathMap:
    """Container paths to host paths; longest container path wins."""

    def __init__(self) -> None:
        self._entries: dict[str, str] = {}

    def add(self, container_path: str, host_path: Path | str) -> None:
        cpath = posixpath.normpath(container_path)
        if cpath == "/":
            return  # mapping "/" would rewrite every absolute path; refuse silently
        self._entries[cpath] = str(host_path)

    def entries(self) -> list[tuple[str, str]]:
        return sorted(self._entries.items(), key=lambda kv: len(kv[0]), reverse=True)

    def to_host(self, value: str) -> str:
        """`value` itself when it is not under a mapped container path."""
        for cpath, hpath in self.entries():
            if value == cpath or value.startswith(cpath + "/"):
                return hpath + value[len(cpath) :]
        return value

    def rewrite(self, value: str) -> str:
        """Rewrite `/c/path...` and `anything=/c/path...` (e.g. `--out=/artifacts/x`)."""
        mapped = self.to_host(value)
        if mapped != value:
            return mapped
        head, sep, tail = value.partition("=")
        if sep and tail.startswith("/"):
            mapped_tail = self.to_host(tail)
            if mapped_tail != tail:
                return head + sep + mapped_tail
        return value


@dataclass
class TokenFile:
    path: Path
    service_account: str
    audience: str | None
    expiration: int
    written_at: float


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.chmod(tmp, mode)
    tmp.replace(path)


def _safe_join(base: Path, rel: str) -> Path:
    norm = posixpath.normpath(rel)
    if norm.startswith("/") or norm == ".." or norm.startswith("../"):
        raise VolumeError(f"invalid volume item path {rel!r}")
    return base / norm


class PodVolumes:
    """Materializes one pod's volumes under `<pod dir>/volumes` (PVCs point elsewhere)."""

    def __init__(self, kube: Kube, pod: Obj, pod_dir: Path, node_allocatable: dict[str, str]) -> None:
        self.kube = kube
        self.pod = pod
        self.pod_dir = pod_dir
        self.node_allocatable = node_allocatable
        self.host: dict[str, Path] = {}
        self.tokens: list[TokenFile] = []

    @property
    def namespace(self) -> str:
        return str(self.pod["metadata"]["namespace"])

    def setup(self) -> None:
        cache = ObjectCache(self.kube, self.namespace)
        root = self.pod_dir / "volumes"
        root.mkdir(parents=True, exist_ok=True)
        for vol in self.pod.get("spec", {}).get("volumes") or []:
            name = vol["name"]
            if name in self.host:
                continue
            self.host[name] = self._setup_one(vol, root / name, cache)

    def _setup_one(self, vol: Obj, target: Path, cache: ObjectCache) -> Path:
        name = vol["name"]
        try:
            if "emptyDir" in vol:
                target.mkdir(parents=True, exist_ok=True)
                return target
            if "configMap" in vol:
                target.mkdir(parents=True, exist_ok=True)
                self._config_map(vol["configMap"], target, cache, vol["configMap"].get("defaultMode", 0o644))
                return target
            if "secret" in vol:
                target.mkdir(parents=True, exist_ok=True)
                self._secret(vol["secret"], target, cache, vol["secret"].get("defaultMode", 0o644))
                return target
            if "downwardAPI" in vol:
                target.mkdir(parents=True, exist_ok=True)
                self._downward(vol["downwardAPI"], target, vol["downwardAPI"].get("defaultMode", 0o644))
                return target
            if "projected" in vol:
                target.mkdir(parents=True, exist_ok=True)
                self._projected(vol["projected"], target, cache)
                return target
            if "persistentVolumeClaim" in vol:
                return self._pvc(vol["persistentVolumeClaim"]["claimName"])
            if "ephemeral" in vol:
                return self._pvc(f"{self.pod['metadata']['name']}-{name}")
            if "hostPath" in vol:
                hp = vol["hostPath"]
                path = Path(hp["path"])
                if hp.get("type") in ("DirectoryOrCreate", None, "") and not path.exists():
                    path.mkdir(parents=True, exist_ok=True)
                return path
        except ConfigError as exc:
            raise VolumeError(f'MountVolume.SetUp failed for volume "{name}": {exc}') from exc
        kinds = sorted(k for k in vol if k != "name")
        raise VolumeError(f'volume "{name}": type {kinds} is not supported by the dev cluster kubelet')

    def _items(self, data_keys: list[str], items: list[Obj] | None) -> list[tuple[str, str, int | None]]:
        if items:
            return [(i["key"], i["path"], i.get("mode")) for i in items]
        return [(k, k, None) for k in data_keys]

    def _config_map(self, src: Obj, target: Path, cache: ObjectCache, mode: int) -> None:
        cm = cache.configmap(src["name"])
        if cm is None:
            if src.get("optional"):
                return
            raise ConfigError(f'configmap "{src["name"]}" not found')
        keys = list((cm.get("data") or {}).keys()) + list((cm.get("binaryData") or {}).keys())
        for key, rel, item_mode in self._items(keys, src.get("items")):
            val = configmap_value(cm, key)
            if val is None:
                if src.get("optional"):
                    continue
                raise ConfigError(f"configmap {src['name']}: no key {key!r}")
            _write(_safe_join(target, rel), val, item_mode if item_mode is not None else mode)

    def _secret(self, src: Obj, target: Path, cache: ObjectCache, mode: int) -> None:
        name = src.get("secretName") or src.get("name")
        sec = cache.secret(str(name))
        if sec is None:
            if src.get("optional"):
                return
            raise ConfigError(f'secret "{name}" not found')
        keys = list((sec.get("data") or {}).keys())
        for key, rel, item_mode in self._items(keys, src.get("items")):
            val = secret_value(sec, key)
            if val is None:
                if src.get("optional"):
                    continue
                raise ConfigError(f"secret {name}: no key {key!r}")
            _write(_safe_join(target, rel), val, item_mode if item_mode is not None else mode)

    def _downward(self, src: Obj, target: Path, mode: int) -> None:
        for item in src.get("items") or []:
            if "fieldRef" in item:
                value = field_value(self.pod, item["fieldRef"]["fieldPath"])
            elif "resourceFieldRef" in item:
                ref = item["resourceFieldRef"]
                container = self._container(ref.get("containerName"))
                value = resource_value(container, ref, self.node_allocatable)
            else:
                continue
            m = item.get("mode")
            _write(_safe_join(target, item["path"]), value.encode(), m if m is not None else mode)

    def _container(self, name: str | None) -> Obj:
        spec = self.pod.get("spec", {})
        for c in (spec.get("containers") or []) + (spec.get("initContainers") or []):
            if name is None or c.get("name") == name:
                return dict(c)
        return {}

    def _projected(self, src: Obj, target: Path, cache: ObjectCache) -> None:
        mode = src.get("defaultMode", 0o644)
        for source in src.get("sources") or []:
            if "serviceAccountToken" in source:
                sat = source["serviceAccountToken"]
                tf = TokenFile(
                    path=_safe_join(target, sat["path"]),
                    service_account=str(self.pod.get("spec", {}).get("serviceAccountName") or "default"),
                    audience=sat.get("audience") or None,
                    expiration=int(sat.get("expirationSeconds") or 3600),
                    written_at=0.0,
                )
                self._write_token(tf, mode)
                self.tokens.append(tf)
            elif "configMap" in source:
                self._config_map(source["configMap"], target, cache, mode)
            elif "secret" in source:
                self._secret(source["secret"], target, cache, mode)
            elif "downwardAPI" in source:
                self._downward(source["downwardAPI"], target, mode)
            elif "clusterTrustBundle" in source or "podCertificate" in source:
                raise ConfigError(f"projected source {sorted(source)} is not supported by the dev cluster")

    def _write_token(self, tf: TokenFile, mode: int = 0o644) -> None:
        meta = self.pod["metadata"]
        spec: dict[str, Any] = {
            "expirationSeconds": max(tf.expiration, 600),
            "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": meta["name"], "uid": meta["uid"]},
        }
        if tf.audience:
            spec["audiences"] = [tf.audience]
        body = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}
        try:
            resp = self.kube.create(
                ns_path(self.namespace, "serviceaccounts", tf.service_account) + "/token", body
            )
        except ApiError as exc:
            raise ConfigError(f"requesting a token for serviceaccount {tf.service_account}: {exc}") from exc
        _write(tf.path, str(resp["status"]["token"]).encode(), mode)
        tf.written_at = time.time()

    def refresh_tokens(self) -> None:
        """Renew projected tokens past 80% of their lifetime, like the kubelet's token manager."""
        for tf in self.tokens:
            if time.time() - tf.written_at > 0.8 * max(tf.expiration, 600):
                self._write_token(tf)

    def next_token_refresh(self) -> float | None:
        if not self.tokens:
            return None
        return min(tf.written_at + 0.8 * max(tf.expiration, 600) for tf in self.tokens)

    def _pvc(self, claim: str) -> Path:
        pvc = self.kube.get_or_none(ns_path(self.namespace, "persistentvolumeclaims", claim))
        if pvc is None:
            raise VolumeError(f'persistentvolumeclaim "{claim}" not found')
        volume_name = pvc.get("spec", {}).get("volumeName")
        if not volume_name or pvc.get("status", {}).get("phase") != "Bound":
            raise VolumeError(f'persistentvolumeclaim "{claim}" is not bound yet')
        pv = self.kube.get_or_none(f"/api/v1/persistentvolumes/{volume_name}")
        if pv is None:
            raise VolumeError(f'persistentvolume "{volume_name}" not found')
        pv_spec = pv.get("spec", {})
        raw = (pv_spec.get("hostPath") or {}).get("path") or (pv_spec.get("local") or {}).get("path")
        if not raw:
            raise VolumeError(
                f'persistentvolume "{volume_name}" is neither hostPath nor local; the dev kubelet cannot mount it'
            )
        path = Path(raw)
        path.mkdir(parents=True, exist_ok=True)
        return path

    def path_map(self, container: Obj, env: dict[str, str], container_dir: Path) -> PathMap:
        """The map for one container: its volume mounts, termination-message path, working dir."""
        pm = PathMap()
        for mount in container.get("volumeMounts") or []:
            base = self.host.get(mount["name"])
            if base is None:
                raise VolumeError(f'volume "{mount["name"]}" mounted by {container["name"]} is not defined')
            sub = mount.get("subPath") or ""
            if mount.get("subPathExpr"):
                sub = expand(str(mount["subPathExpr"]), env)
            host = _safe_join(base, sub) if sub else base
            if sub and not host.exists():
                host.mkdir(parents=True, exist_ok=True)
            pm.add(mount["mountPath"], host)
        term_path = container.get("terminationMessagePath") or DEFAULT_TERMINATION_MESSAGE_PATH
        pm.add(term_path, container_dir / "termination-log")
        workdir = container.get("workingDir")
        if workdir and pm.to_host(workdir) == workdir:
            pm.add(workdir, container_dir / "workdir")
        return pm


def format_labels(pod: Obj) -> str:
    return format_map(pod.get("metadata", {}).get("labels") or {})
