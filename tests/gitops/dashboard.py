"""Check a Grafana dashboard's queries against a real Prometheus, the way Grafana sends them.

Shared by tests/serving/test_grafana_dashboard.py (model servers only) and
tests/integration/test_grafana_operator.py (the operator and predictor pods on the dev
cluster). A query "shows data" when it returns at least one finite value and every
metric it names exists in that Prometheus, so a misspelt metric hidden behind `or`
(as in the error-rate panels) still fails.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "manifests" / "monitoring" / "grafana" / "mlkube.json"
# Grafana's $__rate_interval is max(4 x scrape interval, step + scrape interval): at
# least 1m with the PodMonitor's 15s scrapes.
BUILTINS = {"__rate_interval": "1m", "__interval": "15s", "__range": "5m"}


def dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return data


def variable_defaults(board: dict[str, Any]) -> dict[str, str]:
    """Custom variables at their saved value (what a user sees first)."""
    return {v["name"]: v["current"]["value"] for v in board["templating"]["list"] if v["type"] == "custom"}


def substitute(expr: str, values: dict[str, str]) -> str:
    """$var and ${var} as Grafana interpolates them; unknown names (`$1` of label_replace) stay."""

    def repl(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(2)
        return values.get(name, m.group(0))

    return re.sub(r"\$\{(\w+)\}|\$(\w+)", repl, expr)


_NOT_METRICS = {"and", "or", "unless", "offset", "bool", "group_left", "group_right", "inf", "nan"}


def metric_names(expr: str) -> set[str]:
    """Names of the series an expression selects (its vector selectors' metric names)."""
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)  # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)  # range selectors
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    names = set()
    for m in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", s):
        if s[m.end() :].lstrip().startswith("(") or m.group() in _NOT_METRICS:
            continue  # a function or aggregation, or a keyword
        names.add(m.group())
    return names


def panels(board: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for p in board["panels"]:
        out.append(p)
        out.extend(p.get("panels", []))  # collapsed rows keep their panels inside
    return out


class Checker:
    def __init__(self, prom: str) -> None:
        self.prom = prom
        self._names: set[str] | None = None

    def names(self) -> set[str]:
        """Metric names Prometheus has: with series, or declared by a scraped target.

        A labelled counter that has not counted anything yet (`mlkube_operator_api_errors_total`
        before the first failed request) has no series, but its target declares it (# TYPE);
        Prometheus keeps that as metadata. A misspelt name is in neither.
        """
        r = httpx.get(f"{self.prom}/api/v1/label/__name__/values", timeout=5)
        r.raise_for_status()
        names = set(r.json()["data"])
        r = httpx.get(f"{self.prom}/api/v1/metadata", timeout=5)
        r.raise_for_status()
        suffixes = {
            "counter": ("", "_total"),
            "histogram": ("_bucket", "_sum", "_count"),
            "summary": ("", "_sum", "_count"),
        }
        for family, entries in r.json()["data"].items():
            for entry in entries:
                names |= {family + s for s in suffixes.get(entry["type"], ("",))}
        return names

    def query(self, expr: str) -> list[dict[str, Any]]:
        r = httpx.get(f"{self.prom}/api/v1/query", params={"query": expr}, timeout=10)
        body = r.json()
        if body.get("status") != "success":
            raise AssertionError(f"Prometheus rejected {expr!r}: {body.get('error')}")
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    def problem(self, expr: str, known: set[str], optional: frozenset[str] = frozenset()) -> str | None:
        """Why `expr` (variables substituted) does not show data, or None when it does.

        Names in `optional` may be absent (an `or` alternative for another kind of model).
        """
        missing = metric_names(expr) - known - optional
        if missing:
            return f"names metrics Prometheus does not have: {sorted(missing)}"
        result = self.query(expr)
        if not result:
            return "returns no series"
        if not any(math.isfinite(float(s["value"][1])) for s in result):
            return f"returns only NaN/Inf: {result[:3]}"
        return None


def operator_panel(panel: dict[str, Any]) -> bool:
    """A panel on the operator's own series (only the dev-cluster test has an operator)."""
    return any(n.startswith("mlkube_operator_") for t in panel["targets"] for n in metric_names(t["expr"]))


def dashboard_problems(
    checker: Checker,
    board: dict[str, Any],
    namespace: str,
    deployments: Iterable[str],
    applies_to: dict[str, set[str]],
    include: Callable[[dict[str, Any]], bool] = lambda panel: True,
    optional: frozenset[str] = frozenset(),
) -> list[str]:
    """Every way the dashboard fails to show data; empty when each (included) panel does.

    A panel on `$deployment` must show data for every deployment it applies to
    (`applies_to[title]`, else all of `deployments`); each of its targets for at least one.
    """
    known = checker.names()
    defaults = variable_defaults(board)
    problems = []
    for var in board["templating"]["list"]:
        if var["type"] != "query":
            continue
        m = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", var["query"]["query"])
        assert m, f"variable {var['name']}: only label_values(selector, label) is checked"
        expr = substitute(f"count by ({m.group(2)}) ({m.group(1)})", {"namespace": namespace})
        why = checker.problem(expr, known)
        if why:
            problems.append(f"variable {var['name']}: {why}")
    for panel in panels(board):
        if panel["type"] == "row" or not include(panel):
            continue
        per_deployment = any("$deployment" in t["expr"] for t in panel["targets"])
        targets_for = sorted(applies_to.get(panel["title"], set(deployments))) if per_deployment else [None]
        target_ok = {t["refId"]: False for t in panel["targets"]}
        for deployment in targets_for:
            values = {**BUILTINS, **defaults, "namespace": namespace, "deployment": deployment or ""}
            shown = False
            for t in panel["targets"]:
                why = checker.problem(substitute(t["expr"], values), known, optional)
                if why and "does not have" in why:
                    problems.append(f"panel {panel['title']!r} target {t['refId']}: {why}")
                target_ok[t["refId"]] |= why is None
                shown |= why is None
            if not shown:
                problems.append(f"panel {panel['title']!r} shows nothing for deployment {deployment}")
        for ref, ok in target_ok.items():
            if not ok:
                problems.append(f"panel {panel['title']!r} target {ref} shows nothing for any deployment")
    return problems


def _meta_label(label: str) -> str:
    """A pod label's name in Prometheus' Kubernetes service discovery."""
    return "__meta_kubernetes_pod_label_" + re.sub(r"[^a-zA-Z0-9_]", "_", label)


def pod_targets(pods: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """File-SD target groups for `pods`, labelled as Kubernetes pod discovery labels them.

    Debian's Prometheus is built without Kubernetes discovery, so a test lists the pods
    itself and writes what `kubernetes_sd_configs: [{role: pod}]` would produce (one
    target per container port, with the `__meta_kubernetes_pod_*` labels); the
    PodMonitor's relabelling then runs on them unchanged.
    """
    groups = []
    for pod in pods:
        meta, status = pod["metadata"], pod.get("status") or {}
        if not status.get("podIP"):
            continue
        common = {
            "__meta_kubernetes_namespace": meta["namespace"],
            "__meta_kubernetes_pod_name": meta["name"],
            "__meta_kubernetes_pod_phase": status.get("phase", ""),
            **{_meta_label(k): v for k, v in (meta.get("labels") or {}).items()},
        }
        for container in pod["spec"]["containers"]:
            for port in container.get("ports") or []:
                groups.append(
                    {
                        "targets": [f"{status['podIP']}:{port['containerPort']}"],
                        "labels": {
                            **common,
                            "__meta_kubernetes_pod_container_name": container["name"],
                            "__meta_kubernetes_pod_container_port_name": port.get("name", ""),
                        },
                    }
                )
    return groups


def podmonitor_scrape_config(
    podmonitor: dict[str, Any], sd_file: Path, interval: str = "1s"
) -> dict[str, Any]:
    """The scrape job the Prometheus Operator makes of a PodMonitor (the fields mlkube's use).

    Pods (from `sd_file`, see pod_targets) kept by the selector's labels and the
    endpoint's port name, running pods only, `namespace`/`pod`/`container` labels as the
    operator adds them, then the endpoint's own relabelings and `honorLabels`. The
    interval is shortened for a test.
    """
    spec = podmonitor["spec"]
    [endpoint] = spec["podMetricsEndpoints"]
    relabel: list[dict[str, Any]] = [
        {"source_labels": ["__meta_kubernetes_pod_phase"], "regex": "(Failed|Succeeded)", "action": "drop"},
    ]
    for label, value in spec["selector"]["matchLabels"].items():
        relabel.append({"source_labels": [_meta_label(label)], "regex": re.escape(value), "action": "keep"})
    relabel += [
        {
            "source_labels": ["__meta_kubernetes_pod_container_port_name"],
            "regex": endpoint["port"],
            "action": "keep",
        },
        {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
        {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
        {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
    ]
    for r in endpoint.get("relabelings", []):
        relabel.append(
            {
                "source_labels": r["sourceLabels"],
                "target_label": r["targetLabel"],
                "action": r.get("action", "replace").lower(),
            }
        )
    return {
        "job_name": f"podMonitor/{podmonitor['metadata']['name']}",
        "honor_labels": bool(endpoint.get("honorLabels", False)),
        "scrape_interval": interval,
        "metrics_path": endpoint.get("path", "/metrics"),
        "file_sd_configs": [{"files": [str(sd_file)], "refresh_interval": "1s"}],
        "relabel_configs": relabel,
    }
