"""Container environment, computed the way a kubelet computes it.

Workloads learn their pod IP, name and namespace, and read configuration and secrets,
only through the standard mechanisms (`env`, `envFrom`, the downward API and
`$(VAR)` references in command, args and env values). Reproducing those rules exactly,
including the odd ones (undefined `$(X)` stays literal, `$$` escapes), is what lets
mlkube's manifests run unchanged here and on a real cluster.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from fractions import Fraction
from typing import Any

from .kube import ApiError, Kube, Obj, configmap_value, ns_path, secret_value


class ConfigError(Exception):
    """A container cannot be configured yet (kubelet reason CreateContainerConfigError)."""


def expand(text: str, env: Mapping[str, str]) -> str:
    """Kubernetes `$(VAR)` expansion (third_party/forked/golang/expansion)."""
    out: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch == "$" and i + 1 < n:
            nxt = text[i + 1]
            if nxt == "$":
                out.append("$")
                i += 2
                continue
            if nxt == "(":
                end = text.find(")", i + 2)
                if end == -1:
                    out.append(text[i:])
                    break
                name = text[i + 2 : end]
                out.append(env[name] if name in env else text[i : end + 1])
                i = end + 1
                continue
        out.append(ch)
        i += 1
    return "".join(out)


_SUFFIXES: dict[str, Fraction] = {
    "n": Fraction(1, 10**9),
    "u": Fraction(1, 10**6),
    "m": Fraction(1, 1000),
    "": Fraction(1),
    "k": Fraction(10**3),
    "M": Fraction(10**6),
    "G": Fraction(10**9),
    "T": Fraction(10**12),
    "P": Fraction(10**15),
    "E": Fraction(10**18),
    "Ki": Fraction(2**10),
    "Mi": Fraction(2**20),
    "Gi": Fraction(2**30),
    "Ti": Fraction(2**40),
    "Pi": Fraction(2**50),
    "Ei": Fraction(2**60),
}


def parse_quantity(q: str | int | float) -> Fraction:
    """A resource.Quantity string ("500m", "1Gi", "1e3") as an exact number."""
    if isinstance(q, int | float):
        return Fraction(q)
    s = q.strip()
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if suffix and s.endswith(suffix):
            number = s[: -len(suffix)]
            # "1e3" ends with no suffix; "1E" would be exa — only when what precedes is a number.
            try:
                return Fraction(number) * _SUFFIXES[suffix]
            except ValueError:
                continue
    try:
        return Fraction(s)
    except ValueError:
        return Fraction(float(s))


def field_value(pod: Obj, path: str) -> str:
    meta = pod.get("metadata", {})
    spec = pod.get("spec", {})
    status = pod.get("status", {})
    if path == "metadata.name":
        return str(meta.get("name", ""))
    if path == "metadata.namespace":
        return str(meta.get("namespace", ""))
    if path == "metadata.uid":
        return str(meta.get("uid", ""))
    if path.startswith("metadata.labels['") and path.endswith("']"):
        return str((meta.get("labels") or {}).get(path[len("metadata.labels['") : -2], ""))
    if path.startswith("metadata.annotations['") and path.endswith("']"):
        return str((meta.get("annotations") or {}).get(path[len("metadata.annotations['") : -2], ""))
    if path == "metadata.labels":
        return format_map(meta.get("labels") or {})
    if path == "metadata.annotations":
        return format_map(meta.get("annotations") or {})
    if path == "spec.nodeName":
        return str(spec.get("nodeName", ""))
    if path == "spec.serviceAccountName":
        return str(spec.get("serviceAccountName", ""))
    if path == "status.hostIP":
        return str(status.get("hostIP", ""))
    if path == "status.hostIPs":
        return ",".join(str(i.get("ip", "")) for i in status.get("hostIPs") or [])
    if path == "status.podIP":
        return str(status.get("podIP", ""))
    if path == "status.podIPs":
        return ",".join(str(i.get("ip", "")) for i in status.get("podIPs") or [])
    raise ConfigError(f"unsupported fieldRef fieldPath {path!r}")


def format_map(m: Mapping[str, Any]) -> str:
    """The downward API's `key="value"` lines, sorted by key."""
    return "\n".join(f'{k}="{m[k]}"' for k in sorted(m))


def resource_value(container: Obj, ref: Obj, node_allocatable: Mapping[str, str]) -> str:
    resource = str(ref.get("resource", ""))
    kind, _, name = resource.partition(".")
    resources = container.get("resources") or {}
    raw: Any = (resources.get(kind) or {}).get(name)
    if raw is None and kind == "requests":
        raw = (resources.get("limits") or {}).get(name)
    if raw is None:
        raw = node_allocatable.get(name, "0") if kind == "limits" else "0"
    value = parse_quantity(raw)
    divisor = parse_quantity(ref.get("divisor") or "1")
    if divisor == 0:
        divisor = Fraction(1)
    return str(math.ceil(value / divisor))


class ObjectCache:
    """ConfigMaps and Secrets read while preparing one pod, each fetched once."""

    def __init__(self, kube: Kube, namespace: str) -> None:
        self.kube = kube
        self.namespace = namespace
        self._cache: dict[tuple[str, str], Obj | None] = {}

    def _get(self, resource: str, name: str) -> Obj | None:
        key = (resource, name)
        if key not in self._cache:
            try:
                self._cache[key] = self.kube.get_or_none(ns_path(self.namespace, resource, name))
            except ApiError as exc:
                raise ConfigError(f"reading {resource[:-1]} {self.namespace}/{name}: {exc}") from exc
        return self._cache[key]

    def configmap(self, name: str) -> Obj | None:
        return self._get("configmaps", name)

    def secret(self, name: str) -> Obj | None:
        return self._get("secrets", name)


def _key_ref(cache: ObjectCache, ns: str, src: Obj) -> str | None:
    """The value of a configMapKeyRef / secretKeyRef; None when optional and absent."""
    if "configMapKeyRef" in src:
        ref, kind, obj = src["configMapKeyRef"], "ConfigMap", cache.configmap(src["configMapKeyRef"]["name"])
        raw = configmap_value(obj, ref["key"]) if obj is not None else None
    else:
        ref, kind, obj = src["secretKeyRef"], "Secret", cache.secret(src["secretKeyRef"]["name"])
        raw = secret_value(obj, ref["key"]) if obj is not None else None
    if raw is None:
        if ref.get("optional"):
            return None
        if obj is None:
            raise ConfigError(f'{kind.lower()} "{ref["name"]}" not found')
        raise ConfigError(f"couldn't find key {ref['key']} in {kind} {ns}/{ref['name']}")
    return raw.decode("utf-8", errors="replace")


def container_env(
    pod: Obj,
    container: Obj,
    cache: ObjectCache,
    node_allocatable: Mapping[str, str],
    base: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The container's variables as the container sees them (before any path mapping)."""
    ns = pod["metadata"]["namespace"]
    env: dict[str, str] = dict(base or {})
    for source in container.get("envFrom") or []:
        prefix = str(source.get("prefix") or "")
        if "configMapRef" in source:
            ref = source["configMapRef"]
            cm = cache.configmap(ref["name"])
            if cm is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'configmap "{ref["name"]}" not found')
            for k, v in (cm.get("data") or {}).items():
                env[prefix + k] = str(v)
        elif "secretRef" in source:
            ref = source["secretRef"]
            sec = cache.secret(ref["name"])
            if sec is None:
                if ref.get("optional"):
                    continue
                raise ConfigError(f'secret "{ref["name"]}" not found')
            for k in sec.get("data") or {}:
                val = secret_value(sec, k)
                env[prefix + k] = (val or b"").decode("utf-8", errors="replace")
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var:
            env[name] = expand(str(var.get("value") or ""), env)
            continue
        src = var.get("valueFrom")
        if not src:
            env[name] = ""
            continue
        if "fieldRef" in src:
            env[name] = field_value(pod, src["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in src:
            env[name] = resource_value(container, src["resourceFieldRef"], node_allocatable)
        elif "configMapKeyRef" in src or "secretKeyRef" in src:
            value = _key_ref(cache, ns, src)
            if value is not None:
                env[name] = value
        else:
            raise ConfigError(f"env {name}: unsupported valueFrom {sorted(src)}")
    return env
