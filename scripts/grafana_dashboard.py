"""Build mlkube's Grafana dashboard (manifests/monitoring/grafana/mlkube.json).

    python scripts/grafana_dashboard.py --write   # rewrite the JSON
    python scripts/grafana_dashboard.py           # print it

The dashboard is generated rather than hand-edited so that every panel uses the same
selectors and the same formulas as the operator's analysis (PSI with the same floor,
missing values left out, prediction routes only), and so that a metric renamed in
one place is renamed everywhere. tests/serving/test_grafana_dashboard.py checks
that the committed JSON equals this output and runs every query against a real
Prometheus scraping real model servers.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

OUT = Path(__file__).resolve().parents[1] / "manifests" / "monitoring" / "grafana" / "mlkube.json"
DS = {"type": "prometheus", "uid": "${datasource}"}

# One deployment's series: every model server series carries `model` (the
# ModelDeployment's name); the PodMonitor adds `namespace` and `pod`.
NS = 'namespace="$namespace"'
SEL = f'{NS}, model="$deployment"'
# The prediction routes the analysis counts (mlkube_operator.analysis.counts.is_model_route).
ROUTES = 'route=~"/v1/models/.*|/v2/models/.*", route=~".*:predict|.*/infer"'
# The operator's per-ModelDeployment series carry the deployment's own namespace and
# name (scraped with honorLabels, see docs/monitoring.md).
OP_SEL = 'namespace="$namespace", modeldeployment="$deployment"'
BARS = {"displayMode": "basic", "orientation": "horizontal", "reduceOptions": {"calcs": ["lastNotNull"]}}
# The analysis floors shares at this before the PSI's logarithm (analysis.stats.psi).
EPSILON = "0.0001"


def rate(metric: str, matchers: str, window: str = "$__rate_interval") -> str:
    return f"rate({metric}{{{matchers}}}[{window}])"


def psi(observed: str, reference: str, by: str) -> str:
    """sum by (by) of (p - q) * ln(p / q), p and q the floored shares, as analysis.stats.psi.

    `observed` are counts by (by, bin); they are turned into shares per `by` here. The
    reference ratios already sum to 1 over the non-missing bins (they are the profile's
    fractions), so they are used as they are.
    """
    group = f"on ({by}) group_left"
    total = f"sum by ({by}) ({observed})" if by else f"sum ({observed})"
    share = f"clamp_min(({observed}) / {group} {total}, {EPSILON})"
    ref = f"clamp_min({reference}, {EPSILON})"
    return (
        f"sum by ({by}) (({share} - {ref}) * ln({share} / {ref}))"
        if by
        else f"sum (({share} - {ref}) * ln({share} / {ref}))"
    )


# Input counts by (feature, bin) over the window: numeric bins and categorical levels,
# missing values left out (the profile's fractions are over non-missing values).
FEATURE_COUNTS = (
    f'sum by (feature, bin) (increase(mlkube_feature_bin_total{{{SEL}, bin!="missing"}}[$window]))'
    " or "
    f'sum by (feature, bin) (label_replace(increase(mlkube_feature_level_total{{{SEL}, level!="__missing__"}}[$window]), "bin", "$1", "level", "(.*)"))'
)
FEATURE_REFERENCE = (
    f'max by (feature, bin) (mlkube_feature_reference_ratio{{{SEL}, bin!~"missing|__missing__"}})'
)
# Predictions by bin: classes of a classifier; for a regressor (no classes: `or on ()`
# adds the right side only when the left is empty) the prediction on the bins of the
# model's own held-out predictions. The references are those held-out predictions.
PREDICTION_COUNTS = (
    f'sum by (bin) (label_replace(increase(mlkube_predictions_total{{{SEL}}}[$window]), "bin", "$1", "class", "(.*)"))'
    " or on () "
    f'sum by (bin) (increase(mlkube_prediction_score_bin_total{{{SEL}, bin!="missing"}}[$window]))'
)
PREDICTION_REFERENCE = (
    f"max by (bin) (mlkube_prediction_reference_ratio{{{SEL}}})"
    " or on () "
    f'max by (bin) (mlkube_prediction_score_reference_ratio{{{SEL}, bin!="missing"}})'
)


def error_share(codes: str) -> str:
    """Share of prediction requests answered with `codes`; 0 (not "no data") when there were none."""
    errors = f"sum({rate('mlkube_requests_total', f'{SEL}, {ROUTES}, code=~{json.dumps(codes)}')})"
    total = f"sum({rate('mlkube_requests_total', f'{SEL}, {ROUTES}')})"
    return f"({errors} or 0 * {total}) / {total}"


def target(expr: str, legend: str = "", ref: str = "A", instant: bool = False) -> dict[str, Any]:
    t: dict[str, Any] = {"datasource": DS, "refId": ref, "expr": expr, "legendFormat": legend or "__auto"}
    if instant:
        t |= {"instant": True, "range": False, "format": "table"}
    return t


def targets(*pairs: tuple[str, str]) -> list[dict[str, Any]]:
    return [target(expr, legend, chr(ord("A") + i)) for i, (expr, legend) in enumerate(pairs)]


class Layout:
    """Panels flow left to right in rows 24 units wide; ids are assigned in order."""

    def __init__(self) -> None:
        self.panels: list[dict[str, Any]] = []
        self.x = self.y = self.row_h = 0

    def _id(self) -> int:
        return len(self.panels) + 1

    def row(self, title: str) -> None:
        if self.x:
            self.y += self.row_h
        self.x = self.row_h = 0
        self.panels.append(
            {
                "id": self._id(),
                "type": "row",
                "title": title,
                "collapsed": False,
                "gridPos": {"h": 1, "w": 24, "x": 0, "y": self.y},
                "panels": [],
            }
        )
        self.y += 1

    def panel(
        self,
        kind: str,
        title: str,
        description: str,
        tgts: list[dict[str, Any]],
        unit: str = "short",
        w: int = 8,
        h: int = 8,
        **extra: Any,
    ) -> None:
        if self.x + w > 24:
            self.y += self.row_h
            self.x = self.row_h = 0
        panel: dict[str, Any] = {
            "id": self._id(),
            "type": kind,
            "title": title,
            "description": description,
            "datasource": DS,
            "gridPos": {"h": h, "w": w, "x": self.x, "y": self.y},
            "targets": tgts,
            "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
            "options": {},
        }
        if kind == "timeseries":
            panel["options"] = {
                "legend": {"displayMode": "list", "placement": "bottom", "showLegend": True},
                "tooltip": {"mode": "multi", "sort": "desc"},
            }
        for key, value in extra.items():
            panel[key] = value
        self.panels.append(panel)
        self.x += w
        self.row_h = max(self.row_h, h)


def query_variable(name: str, label: str, query: str) -> dict[str, Any]:
    return {
        "type": "query",
        "name": name,
        "label": label,
        "datasource": DS,
        "definition": query,
        "query": {"query": query, "refId": f"{name}-variable"},
        "refresh": 2,
        "sort": 1,
        "includeAll": False,
        "multi": False,
        "current": {},
        "hide": 0,
        "options": [],
        "regex": "",
    }


def build() -> dict[str, Any]:
    lay = Layout()

    lay.row("Overview: datasets, training runs, model deployments")
    lay.panel(
        "stat",
        "Objects",
        "mlkube objects in the cluster, by kind (from the operator's watch).",
        targets(("max by (kind) (mlkube_operator_objects)", "{{kind}}")),
        w=6,
        options={"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
    )
    for kind, condition, title in (
        ("Dataset", "Ready", "Datasets by Ready"),
        ("TrainingRun", "Succeeded", "TrainingRuns by Succeeded"),
    ):
        lay.panel(
            "bargauge",
            title,
            f"{kind}s by their {condition} condition's status and reason (docs/operator.md lists the reasons).",
            targets(
                (
                    f'max by (status, reason) (mlkube_operator_object_conditions{{kind="{kind}", condition="{condition}"}})',
                    "{{status}} {{reason}}",
                )
            ),
            w=6,
            options=BARS,
        )
    lay.panel(
        "bargauge",
        "ModelDeployments by condition",
        "ModelDeployments by each condition (Ready, Progressing, Degraded), its status and reason.",
        targets(
            (
                'max by (condition, status, reason) (mlkube_operator_object_conditions{kind="ModelDeployment"})',
                "{{condition}}={{status}} {{reason}}",
            )
        ),
        w=6,
        options=BARS,
    )

    lay.row("Serving overview")
    lay.panel(
        "timeseries",
        "Prediction requests by deployment",
        "Prediction requests per second (V1 and V2 model routes), every ModelDeployment in the namespace.",
        targets(
            (
                "sum by (model) (" + rate("mlkube_requests_total", NS + ", " + ROUTES) + ")",
                "{{model}}",
            )
        ),
        unit="reqps",
        w=12,
    )
    lay.panel(
        "table",
        "Predictor pods",
        "Every predictor pod in the namespace: its deployment, the model digest it serves and whether it is ready (mlkube_model_ready).",
        [
            target('max by (model, pod) (mlkube_model_ready{namespace="$namespace"})', "", "A", instant=True),
            target(
                'max by (model, pod, sha256) (mlkube_model_info{namespace="$namespace"})',
                "",
                "B",
                instant=True,
            ),
        ],
        transformations=[{"id": "merge", "options": {}}],
        w=12,
    )

    lay.row("Deployment $deployment: traffic, errors, latency")
    lay.panel(
        "timeseries",
        "Traffic by response code",
        "Prediction requests per second by HTTP status (499: the client went away).",
        targets((f"sum by (code) ({rate('mlkube_requests_total', f'{SEL}, {ROUTES}')})", "{{code}}")),
        unit="reqps",
    )
    lay.panel(
        "timeseries",
        "Error rate",
        "Share of prediction requests answered 5xx (what spec.monitoring.thresholds.maxErrorRate bounds) and 4xx (client errors, not counted by the analysis).",
        targets((error_share("5.."), "5xx"), (error_share("4.."), "4xx")),
        unit="percentunit",
    )
    lay.panel(
        "timeseries",
        "Latency quantiles",
        "Request latency from arrival to response sent (maxLatencyP99Ms bounds the p99).",
        targets(
            *(
                (
                    f"histogram_quantile({q}, sum by (le) ({rate('mlkube_request_duration_seconds_bucket', f'{SEL}, {ROUTES}')}))",
                    f"p{int(float(q) * 100)}",
                )
                for q in ("0.5", "0.9", "0.99")
            )
        ),
        unit="s",
    )

    lay.row("Deployment $deployment: drift and accuracy (window $window)")
    lay.panel(
        "timeseries",
        "Input drift per feature (PSI)",
        "Population stability index of each feature's inputs over the window against the Dataset's reference profile, "
        "missing values left out, shares floored at 1e-4 (status.lastAnalysis.values.inputDriftPsi is this on folded "
        "bins). For humans: the operator decides with tests sized to the window (docs/operator.md). "
        "Rule of thumb: < 0.1 stable, 0.1-0.25 some shift, > 0.25 a real shift.",
        targets((psi(FEATURE_COUNTS, FEATURE_REFERENCE, "feature"), "{{feature}}")),
        w=12,
    )
    lay.panel(
        "timeseries",
        "Prediction drift (PSI)",
        "PSI of the predicted classes (classifier) or predictions on quantile bins (regressor) over the window "
        "against the model's own predictions on its held-out rows (empty for models trained without them).",
        targets((psi(PREDICTION_COUNTS, PREDICTION_REFERENCE, ""), "prediction PSI")),
        w=12,
    )
    lay.panel(
        "bargauge",
        "Predictions against the reference",
        "Share of predictions per class (or prediction bin) over the window, beside the held-out rows' share.",
        targets(
            (f"({PREDICTION_COUNTS}) / ignoring (bin) group_left sum ({PREDICTION_COUNTS})", "{{bin}}"),
            (PREDICTION_REFERENCE, "reference {{bin}}"),
        ),
        unit="percentunit",
        w=12,
        options={
            "displayMode": "basic",
            "orientation": "horizontal",
            "reduceOptions": {"calcs": ["lastNotNull"]},
        },
    )
    lay.panel(
        "timeseries",
        "Accuracy from feedback",
        "Share of correct predictions among rows labelled through POST /v2/models/{name}/feedback (classifiers; "
        "minAccuracy bounds it).",
        targets(
            (
                f'sum(increase(mlkube_feedback_total{{{SEL}, outcome="correct"}}[$window]))'
                f' / sum(increase(mlkube_feedback_total{{{SEL}, outcome=~"correct|incorrect"}}[$window]))',
                "accuracy",
            )
        ),
        unit="percentunit",
        w=6,
    )
    lay.panel(
        "timeseries",
        "Regression error from feedback",
        "Mean absolute error and root mean squared error of scored feedback rows (regressors).",
        targets(
            (
                f"sum(increase(mlkube_feedback_abs_error_sum{{{SEL}}}[$window]))"
                f" / sum(increase(mlkube_feedback_abs_error_count{{{SEL}}}[$window]))",
                "MAE",
            ),
            (
                f"sqrt(sum(increase(mlkube_feedback_squared_error_sum{{{SEL}}}[$window]))"
                f" / sum(increase(mlkube_feedback_squared_error_count{{{SEL}}}[$window])))",
                "RMSE",
            ),
        ),
        w=6,
    )
    lay.panel(
        "timeseries",
        "Feedback rows",
        "Labelled rows per second by outcome (unknown_id: feedback for an id the server no longer remembers).",
        targets((f"sum by (outcome) ({rate('mlkube_feedback_total', SEL)})", "{{outcome}}")),
        unit="rowsps",
        w=12,
    )

    lay.row("Deployment $deployment: rollout and canary")
    lay.panel(
        "timeseries",
        "Pods by model digest",
        "Predictor pods exporting each model sha256: during a canary the candidate's pods beside the stable ones; "
        "more than one digest for long is a stuck rollout (alert MlkubeServingMixedModels).",
        targets((f"count by (sha256) (mlkube_model_info{{{SEL}}})", "{{sha256}}")),
        w=8,
        fieldConfig={
            "defaults": {"unit": "short", "custom": {"stacking": {"mode": "normal"}}},
            "overrides": [],
        },
    )
    lay.panel(
        "timeseries",
        "Traffic share by model digest",
        "Share of prediction requests answered by the pods of each model sha256: the canary's actual weight.",
        targets(
            (
                f"sum by (sha256) ({rate('mlkube_requests_total', f'{SEL}, {ROUTES}')}"
                f" * on (namespace, pod) group_left (sha256) max by (namespace, pod, sha256) (mlkube_model_info{{{SEL}}}))"
                f" / ignoring (sha256) group_left sum ({rate('mlkube_requests_total', f'{SEL}, {ROUTES}')}"
                f" * on (namespace, pod) group_left max by (namespace, pod) (mlkube_model_info{{{SEL}}}))",
                "{{sha256}}",
            )
        ),
        unit="percentunit",
        w=8,
    )
    lay.panel(
        "timeseries",
        "Ready predictor pods",
        "Pods whose model is loaded and warmed up (mlkube_model_ready); a pod at 0 refuses predictions with 503 "
        "(digest mismatch, load or warm-up failure).",
        targets(
            (f"sum(mlkube_model_ready{{{SEL}}})", "ready"),
            (f"count(mlkube_model_ready{{{SEL}}})", "pods"),
        ),
        w=8,
    )

    lay.panel(
        "timeseries",
        "Canary weight",
        "status.canary.weight: percent of the replicas running the candidate model (0 without a canary).",
        targets((f"max(mlkube_operator_canary_weight{{{OP_SEL}}})", "weight")),
        unit="percent",
        w=8,
    )

    lay.row("Deployment $deployment: the operator's analysis and actions")
    lay.panel(
        "timeseries",
        "Analysis verdicts",
        "Verdicts of the operator's degradation analysis (Healthy, Degraded, InsufficientData, MetricsUnavailable) per interval.",
        targets(
            (
                f"sum by (verdict) (increase(mlkube_operator_analysis_verdicts_total{{{OP_SEL}}}[$__rate_interval]))",
                "{{verdict}}",
            )
        ),
        w=8,
    )
    lay.panel(
        "timeseries",
        "Judged values",
        "What the last analysis measured (status.lastAnalysis.values): error rate, largest input PSI, prediction PSI, accuracy.",
        targets(
            (
                f'max by (value) (mlkube_operator_analysis_value{{{OP_SEL}, value=~"errorRate|inputDriftPsi|predictionDriftPsi|accuracy"}})',
                "{{value}}",
            )
        ),
        w=8,
    )
    lay.panel(
        "timeseries",
        "Rollbacks and retrains",
        "Actions taken on Degraded verdicts (Alert, Rollback, RollbackImpossible, Retrain, CanaryAbort).",
        targets(
            (
                f"sum by (action) (increase(mlkube_operator_degradation_actions_total{{{OP_SEL}}}[$__rate_interval]))",
                "{{action}}",
            )
        ),
        w=8,
        fieldConfig={"defaults": {"unit": "short", "custom": {"drawStyle": "bars"}}, "overrides": []},
    )

    lay.row("Operator health")
    lay.panel(
        "timeseries",
        "Reconciliations",
        "Reconciliations per second by kind and outcome (retry: transient failure, failed: permanent, error: a bug).",
        targets(
            (
                "sum by (kind, outcome) (rate(mlkube_operator_reconciliations_total[$__rate_interval]))",
                "{{kind}} {{outcome}}",
            )
        ),
        unit="ops",
        w=8,
    )
    lay.panel(
        "timeseries",
        "Reconcile duration p99",
        "99th percentile of one reconciliation's time, API calls included, by kind.",
        targets(
            (
                "histogram_quantile(0.99, sum by (kind, le) (rate(mlkube_operator_reconcile_duration_seconds_bucket[$__rate_interval])))",
                "{{kind}}",
            )
        ),
        unit="s",
        w=8,
    )
    lay.panel(
        "timeseries",
        "Kubernetes API requests",
        "Requests of the operator's Kubernetes client by verb, and the share that failed "
        "(status >= 400 other than 404/409, or no answer).",
        targets(
            ("sum by (verb) (rate(mlkube_operator_api_requests_total[$__rate_interval]))", "{{verb}}"),
            (
                "(sum(rate(mlkube_operator_api_errors_total[$__rate_interval]))"
                " or 0 * sum(rate(mlkube_operator_api_requests_total[$__rate_interval])))"
                " / sum(rate(mlkube_operator_api_requests_total[$__rate_interval]))",
                "error share",
            ),
        ),
        unit="reqps",
        w=8,
        fieldConfig={
            "defaults": {"unit": "reqps"},
            "overrides": [
                {
                    "matcher": {"id": "byName", "options": "error share"},
                    "properties": [
                        {"id": "unit", "value": "percentunit"},
                        {"id": "custom.axisPlacement", "value": "right"},
                    ],
                }
            ],
        },
    )
    lay.panel(
        "timeseries",
        "Jobs launched",
        "Profile and training Jobs the operator created, per interval.",
        targets(
            (
                "sum by (component) (increase(mlkube_operator_jobs_launched_total[$__rate_interval]))",
                "{{component}}",
            )
        ),
        w=8,
        fieldConfig={"defaults": {"unit": "short", "custom": {"drawStyle": "bars"}}, "overrides": []},
    )
    lay.panel(
        "timeseries",
        "Leader",
        "1 on the replica holding the leader Lease, 0 on standbys.",
        targets(("max by (pod, instance) (mlkube_operator_leader)", "{{pod}} {{instance}}")),
        w=8,
    )
    lay.panel(
        "timeseries",
        "Operator CPU and memory",
        "CPU (cores) and resident memory of each operator replica (the targets that export mlkube_operator_leader).",
        targets(
            (
                "rate(process_cpu_seconds_total[$__rate_interval]) and on (instance) mlkube_operator_leader",
                "CPU {{pod}} {{instance}}",
            ),
            (
                "process_resident_memory_bytes and on (instance) mlkube_operator_leader",
                "memory {{pod}} {{instance}}",
            ),
        ),
        w=8,
        fieldConfig={
            "defaults": {"unit": "short"},
            "overrides": [
                {
                    "matcher": {"id": "byFrameRefID", "options": "B"},
                    "properties": [
                        {"id": "unit", "value": "bytes"},
                        {"id": "custom.axisPlacement", "value": "right"},
                    ],
                }
            ],
        },
    )

    return {
        "annotations": {
            "list": [
                {
                    "builtIn": 1,
                    "datasource": {"type": "grafana", "uid": "-- Grafana --"},
                    "enable": True,
                    "hide": True,
                    "iconColor": "rgba(0, 211, 255, 1)",
                    "name": "Annotations & Alerts",
                    "type": "dashboard",
                }
            ]
        },
        "description": "mlkube: datasets, training runs and model deployments; per deployment traffic, errors, "
        "latency, drift, accuracy, canaries, rollbacks and retrains; the operator's health. docs/monitoring.md",
        "editable": True,
        "graphTooltip": 1,
        "id": None,
        "links": [],
        "panels": lay.panels,
        "refresh": "30s",
        "schemaVersion": 39,
        "tags": ["mlkube", "mlops"],
        "templating": {
            "list": [
                {
                    "type": "datasource",
                    "name": "datasource",
                    "label": "Prometheus",
                    "query": "prometheus",
                    "current": {},
                    "hide": 0,
                    "refresh": 1,
                    "regex": "",
                    "options": [],
                },
                query_variable("namespace", "Namespace", "label_values(mlkube_model_info, namespace)"),
                query_variable(
                    "deployment",
                    "ModelDeployment",
                    'label_values(mlkube_model_info{namespace="$namespace"}, model)',
                ),
                {
                    "type": "custom",
                    "name": "window",
                    "label": "Analysis window",
                    "description": "Look-back of the drift and accuracy panels; match spec.monitoring.windowSeconds.",
                    "query": "5m,15m,1h,6h",
                    "current": {"selected": True, "text": "5m", "value": "5m"},
                    "options": [
                        {"selected": v == "5m", "text": v, "value": v} for v in ("5m", "15m", "1h", "6h")
                    ],
                    "hide": 0,
                    "includeAll": False,
                    "multi": False,
                },
            ]
        },
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "timezone": "browser",
        "title": "mlkube",
        "uid": "mlkube",
        "version": 1,
        "weekStart": "",
    }


def render() -> str:
    return json.dumps(build(), indent=2) + "\n"


if __name__ == "__main__":
    if sys.argv[1:] == ["--write"]:
        OUT.parent.mkdir(parents=True, exist_ok=True)
        OUT.write_text(render())
    else:
        sys.stdout.write(render())
