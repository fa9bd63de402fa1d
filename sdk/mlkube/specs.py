"""Pure builders: Python objects in, mlkube manifests and tables out (no I/O).

The SDK writes the same resources a platform team writes in YAML, built and validated
with the operator's own pydantic models (`mlkube_operator.api`), so a spec the SDK sends
is one `mlkube validate` accepts and `.to_yaml()` is the manifest to commit to Git.
Kept apart from the handles so the conversions (an estimator instance to
`spec.estimator`, a manifest to YAML, runs to a comparison table) are unit-tested without a cluster.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from mlkube_operator import constants as C
from mlkube_operator.api import Kind
from mlkube_operator.api.trainingrun import Estimator

from .errors import InvalidSpec

# ConfigMaps (like every object) are capped at 1 MiB by the API server (etcd's request
# limit is 1.5 MiB); the CSV text goes in one key, the rest of the object needs a little room.
CONFIGMAP_LIMIT_BYTES = 1_000_000
CONFIGMAP_KEY = "data.csv"

JSON = dict[str, Any]


def validation_message(err: ValidationError) -> str:
    """`spec.field.sub: problem; ...` from a pydantic error, with the wire (camelCase) names."""
    parts = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        parts.append(f"{loc}: {e['msg']}" if loc else str(e["msg"]))
    return "; ".join(parts)


def parse_spec(model: type[BaseModel], spec: Mapping[str, Any], kind: str, name: str) -> BaseModel:
    """Validate `spec` with the API model; InvalidSpec names the field (prefixed `spec.`)."""
    try:
        return model.model_validate(dict(spec))
    except ValidationError as err:
        msg = "; ".join(f"spec.{part}" for part in validation_message(err).split("; "))
        raise InvalidSpec(msg, reason="InvalidSpec", kind=kind, name=name) from None


def dump_spec(spec: BaseModel) -> JSON:
    """The spec as the API server takes it: camelCase, no nulls."""
    out: JSON = spec.model_dump(mode="json", by_alias=True, exclude_none=True)
    return out


def manifest(kind: Kind, name: str, spec: BaseModel, namespace: str | None = None) -> JSON:
    meta: JSON = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    return {"apiVersion": C.API_VERSION, "kind": kind.kind, "metadata": meta, "spec": dump_spec(spec)}


def to_yaml(kind: Kind, name: str, spec: Mapping[str, Any]) -> str:
    """The manifest to commit to Git: only what differs from the schema's defaults, no namespace
    (apply it with `kubectl apply -n NS` or a kustomization's namespace)."""
    model = parse_spec(kind.spec, spec, kind.kind, name)
    body: JSON = model.model_dump(mode="json", by_alias=True, exclude_none=True, exclude_defaults=True)
    doc = {"apiVersion": C.API_VERSION, "kind": kind.kind, "metadata": {"name": name}, "spec": body}
    return yaml.safe_dump(doc, sort_keys=False, default_flow_style=False)


# -- estimators ---------------------------------------------------------------------------------


def class_path(cls: type) -> str:
    """The public dotted path of a class: `sklearn.ensemble.RandomForestClassifier`, not the
    private module it is defined in (`sklearn.ensemble._forest`), when a parent module exports it."""
    parts = cls.__module__.split(".")
    for i in range(1, len(parts) + 1):
        module_name = ".".join(parts[:i])
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # pragma: no cover - a parent of an imported module imports
            continue
        if getattr(module, cls.__qualname__, None) is cls:
            return f"{module_name}.{cls.__qualname__}"
    return f"{cls.__module__}.{cls.__qualname__}"


def json_safe(value: Any, where: str) -> Any:
    """`value` as JSON (numpy scalars to Python); InvalidSpec naming `where` when it has no JSON form."""
    if value is None or isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise InvalidSpec(f"{where}: {value} is not a finite number", reason="InvalidSpec")
        return float(value)
    item = getattr(value, "item", None)
    if callable(item) and getattr(value, "shape", None) == ():  # a numpy scalar
        return json_safe(item(), where)
    if isinstance(value, Mapping):
        return {str(k): json_safe(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise InvalidSpec(
        f"{where}: a {type(value).__name__} cannot be written into a manifest "
        "(only numbers, strings, booleans, null and lists/maps of them)",
        reason="InvalidSpec",
    )


def _defaults(cls: type) -> dict[str, Any]:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return {}
    return {n: p.default for n, p in sig.parameters.items() if p.default is not inspect.Parameter.empty}


def estimator_spec(estimator: Any, params: Mapping[str, Any] | None = None) -> Estimator:
    """`spec.estimator` from a class path, a class or an (unfitted) estimator instance.

    An instance contributes `get_params(deep=False)`, keeping only the parameters that
    differ from the constructor's defaults (the manifest says what was chosen); `params`
    override them. Every value must have a JSON form.
    """
    chosen: dict[str, Any] = {}
    if isinstance(estimator, str):
        name = estimator
    elif isinstance(estimator, type):
        name = class_path(estimator)
    else:
        get_params = getattr(estimator, "get_params", None)
        if not callable(get_params):
            raise InvalidSpec(
                f"estimator: expected a class path, a class or a scikit-learn estimator, got {type(estimator).__name__}",
                reason="InvalidSpec",
            )
        cls = type(estimator)
        name = class_path(cls)
        defaults = _defaults(cls)
        for key, value in dict(get_params(deep=False)).items():
            if key in defaults and _same(defaults[key], value):
                continue
            chosen[key] = value
    chosen.update(params or {})
    safe = {k: json_safe(v, f"spec.estimator.params.{k}") for k, v in chosen.items()}
    try:
        return Estimator(class_name=name, params=safe)
    except ValidationError as err:
        raise InvalidSpec(f"spec.estimator.{validation_message(err)}", reason="InvalidSpec") from None


def _same(default: Any, value: Any) -> bool:
    try:
        return bool(type(default) is type(value) and default == value)
    except Exception:  # an array compared elementwise: not a default
        return False


# -- tables -------------------------------------------------------------------------------------


def condition(obj: Mapping[str, Any] | None, type_: str) -> JSON | None:
    """The condition `type_` of a live object, when it was set for the current generation."""
    if not obj:
        return None
    generation = (obj.get("metadata") or {}).get("generation")
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == type_:
            observed = cond.get("observedGeneration")
            if observed is not None and generation is not None and observed != generation:
                return None
            return dict(cond)
    return None


def comparison_rows(runs: Sequence[Mapping[str, Any]]) -> list[JSON]:
    """One row per TrainingRun: run, estimator, dataset, state, `param.<name>` and `metric.<name>` columns.

    A search run's parameters are those of its best trial (what the model was refitted with).
    """
    rows: list[JSON] = []
    for obj in runs:
        spec = obj.get("spec") or {}
        status = obj.get("status") or {}
        cond = condition(obj, C.SUCCEEDED) or {}
        row: JSON = {
            "run": obj["metadata"]["name"],
            "estimator": (spec.get("estimator") or {}).get("className", ""),
            "dataset": (spec.get("datasetRef") or {}).get("name", ""),
            "succeeded": cond.get("status", ""),
            "reason": cond.get("reason", ""),
        }
        params = dict((spec.get("estimator") or {}).get("params") or {})
        best = (status.get("search") or {}).get("bestParams")  # a JSON object in a string
        if isinstance(best, str):
            try:
                decoded = json.loads(best)
            except ValueError:
                decoded = None
            if isinstance(decoded, dict):
                params.update(decoded)
        for key in sorted(params):
            value = params[key]
            row[f"param.{key}"] = value if not isinstance(value, list | dict) else repr(value)
        for key, value in sorted((status.get("metrics") or {}).items()):
            row[f"metric.{key}"] = value
        rows.append(row)
    return rows


def conditions_html(obj: Mapping[str, Any] | None) -> str:
    import html

    conds = ((obj or {}).get("status") or {}).get("conditions") or []
    if not conds:
        return "<p><i>no conditions yet</i></p>"
    cells = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(c.get(k, '')))}</td>"
            for k in ("type", "status", "reason", "message", "lastTransitionTime")
        )
        + "</tr>"
        for c in conds
    )
    head = "".join(f"<th>{h}</th>" for h in ("Type", "Status", "Reason", "Message", "Since"))
    return f"<table><thead><tr>{head}</tr></thead><tbody>{cells}</tbody></table>"


def summary_html(kind: str, name: str, namespace: str, fields: Mapping[str, Any], obj: Any) -> str:
    import html

    rows = "".join(
        f"<tr><th style='text-align:left'>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>"
        for k, v in fields.items()
        if v is not None
    )
    return (
        f"<div><b>{html.escape(kind)}</b> <code>{html.escape(namespace)}/{html.escape(name)}</code>"
        f"<table>{rows}</table>{conditions_html(obj)}</div>"
    )


def wait_step(kind: str, obj: Mapping[str, Any]) -> tuple[int, int]:
    """(steps done, steps in all) of a wait on `obj`, for the progress bar.

    Dataset: the operator took it, its profile Job started, Ready (3 steps counting the
    first). TrainingRun: the operator took it, its Dataset is ready, its Job started,
    Succeeded. ModelDeployment: one step per ready replica, then Ready.
    """
    status = obj.get("status") or {}
    if kind == "Dataset":
        cond = condition(obj, C.READY)
        if cond is not None and cond.get("status") == "True":
            return 3, 3
        return (2 if status.get("jobName") else 1 if cond is not None else 0), 3
    if kind == "TrainingRun":
        cond = condition(obj, C.SUCCEEDED)
        if cond is not None and cond.get("status") == "True":
            return 4, 4
        if status.get("jobName") or (status.get("search") or {}).get("jobName"):
            return 3, 4
        if cond is not None and cond.get("reason") != C.REASON_DATASET_NOT_READY:
            return 2, 4
        return (1 if cond is not None else 0), 4
    if kind == "ModelDeployment":
        replicas = max(int((obj.get("spec") or {}).get("replicas") or 1), 1)
        cond = condition(obj, C.READY)
        if cond is not None and cond.get("status") == "True":
            return replicas + 1, replicas + 1
        return min(int(status.get("readyReplicas") or 0), replicas), replicas + 1
    raise ValueError(f"no wait steps for {kind}")


# Event reasons of a ModelDeployment by what they tell (docs/sdk.md lists them).
HISTORY_CATEGORIES: dict[str, str] = {
    C.REASON_ROLLING_OUT: "rollout",
    C.REASON_ROLLOUT_COMPLETE: "rollout",
    C.REASON_SERVING: "rollout",
    C.REASON_CANARY: "canary",
    C.REASON_CANARY_PROMOTED: "canary",
    C.REASON_CANARY_ABORTED: "canary",
    C.REASON_CANARY_INCONCLUSIVE: "canary",
    C.REASON_CANARY_SUPERSEDED: "canary",
    C.REASON_ABORTED_BY_USER: "canary",
    C.REASON_ROLLED_BACK: "rollback",
    C.REASON_ROLLBACK_IMPOSSIBLE: "rollback",
    C.DEGRADED: "verdict",
    C.REASON_RECOVERED: "verdict",
    C.REASON_MODEL_DEGRADED: "verdict",
    C.REASON_RETRAINING: "retrain",
    C.REASON_RETRAIN_SKIPPED: "retrain",
    C.REASON_RETRAIN_INEFFECTIVE: "retrain",
    C.REASON_RETRAIN_FAILED: "retrain",
    C.REASON_RETRAIN_SUPERSEDED: "retrain",
    C.REASON_MANUAL_ACTION: "manual",
    C.REASON_MANUAL_ACTION_IGNORED: "manual",
    C.REASON_MODEL_NOT_READY: "model",
    C.REASON_MODEL_REJECTED: "model",
    C.REASON_INVALID_SPEC: "error",
    C.REASON_FORBIDDEN: "error",
    C.REASON_REJECTED: "error",
    C.REASON_API_UNREACHABLE: "error",
    C.REASON_API_ERROR: "error",
    C.REASON_INTERNAL_ERROR: "error",
    C.REASON_RECONCILE_SUCCEEDED: "error",
}
HISTORY_COLUMNS = [
    "time",
    "category",
    "reason",
    "type",
    "message",
    "model",
    "count",
    "source",
    "samples",
    "accuracy",
    "input_drift_psi",
    "prediction_drift_psi",
    "error_rate",
]


def _utc(value: Any) -> datetime | None:
    """An API timestamp (RFC 3339, `Z` or an offset, any fraction) as an aware UTC datetime."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return (parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)).astimezone(UTC)


def _event_time(event: Mapping[str, Any]) -> str | None:
    for key in ("lastTimestamp", "eventTime", "firstTimestamp"):
        value = event.get(key)
        if value:
            return str(value)
    series = event.get("series") or {}
    return str(series["lastObservedTime"]) if series.get("lastObservedTime") else None


def history_rows(obj: Mapping[str, Any], events: Sequence[Mapping[str, Any]]) -> list[JSON]:
    """A ModelDeployment's timeline, oldest first: its Events (rollouts, canary steps and
    verdicts, rollbacks, degradation verdicts, retrains, manual actions, errors) and what its
    status keeps (the last analysis with its measured values, rejected models, the last
    retrain and manual action, the current canary step and state).

    Events are the operator's record of what it did (kept by the API server for its event
    TTL, one hour by default; a repeated Event is one row with its `count`); the status
    rows have `source` "status".
    """
    rows: list[JSON] = []

    def add(time: Any, category: str, reason: str, message: str, **extra: Any) -> None:
        when = _utc(time)
        if when is None:
            return
        rows.append({"time": when, "category": category, "reason": reason, "message": message, **extra})

    for ev in events:
        reason = str(ev.get("reason") or "")
        add(
            _event_time(ev),
            HISTORY_CATEGORIES.get(reason, "other"),
            reason,
            str(ev.get("message") or ""),
            type=str(ev.get("type") or ""),
            count=int(ev.get("count") or (ev.get("series") or {}).get("count") or 1),
            source="event",
        )
    st = obj.get("status") or {}
    if st.get("stateSince") and st.get("state"):
        current = (st.get("currentModel") or {}).get("trainingRun")
        add(
            st["stateSince"],
            "state",
            str(st.get("stateSummary") or st["state"]),
            f"in state {st['state']} since",
            model=current,
            source="status",
        )
    analysis = st.get("lastAnalysis") or {}
    if analysis:
        values = analysis.get("values") or {}
        add(
            analysis.get("time"),
            "verdict",
            str(analysis.get("verdict") or ""),
            "; ".join(analysis.get("reasons") or []),
            model=(st.get("currentModel") or {}).get("trainingRun"),
            source="status",
            samples=values.get("samples"),
            accuracy=values.get("accuracy"),
            input_drift_psi=values.get("inputDriftPsi"),
            prediction_drift_psi=values.get("predictionDriftPsi"),
            error_rate=values.get("errorRate"),
        )
    canary = st.get("canary") or {}
    if canary.get("stepStartedTime"):
        add(
            canary["stepStartedTime"],
            "canary",
            f"Step{canary.get('step')}",
            f"weight {canary.get('weight')}%: {canary.get('verdict') or 'no verdict yet'}"
            + (f" ({canary['holdReason']})" if canary.get("holdReason") else ""),
            model=(st.get("candidateModel") or {}).get("trainingRun"),
            source="status",
        )
    for rejected in st.get("rejectedModels") or []:
        reason = str(rejected.get("reason") or "")
        add(
            rejected.get("time"),
            "rollback" if reason == C.REASON_ROLLED_BACK else "canary",
            reason,
            f"model {str(rejected.get('sha256') or '')[:12]} rejected: {rejected.get('message') or ''}".rstrip(),
            model=rejected.get("trainingRun"),
            source="status",
        )
    retrain = st.get("lastRetrain") or {}
    if retrain:
        add(
            retrain.get("time"),
            "retrain",
            f"Retrain{retrain.get('result') or ''}",
            str(retrain.get("message") or ""),
            model=retrain.get("run"),
            source="status",
        )
    manual = st.get("manualAction") or {}
    if manual:
        add(
            manual.get("time"),
            "manual",
            str(manual.get("action") or ""),
            str(manual.get("result") or ""),
            source="status",
        )
    for row in rows:
        for column in HISTORY_COLUMNS:
            row.setdefault(column, None)
    rows.sort(key=lambda r: (r["time"], r["source"] != "event"))
    return rows


# The reader pod's program: the operator's own artifact store code (in the trainer image)
# reads a file:// path on the artifact volume or an s3:// object with the Job's credentials.
READER_SCRIPT = (
    "import sys\n"
    "from mlkube_operator.training.artifacts import open_store\n"
    "uri = sys.argv[1]\n"
    "store = open_store(uri if uri.startswith('s3://') else '/')\n"
    "sys.stdout.write(store.read(uri).decode('utf-8'))\n"
)


def reader_pod(job: Mapping[str, Any], uri: str, name: str) -> JSON:
    """A pod that prints the artifact `uri` to its log, made like the operator's Job `job`:
    its image, security context, resources, artifact volume (read-only) and artifact-store
    environment (credentials by Secret reference, never copied), nothing else."""
    template = ((job.get("spec") or {}).get("template") or {}).get("spec") or {}
    main = (template.get("containers") or [{}])[0]
    volumes = [v for v in template.get("volumes") or [] if v.get("name") == "artifacts"]
    mounts = [{**m, "readOnly": True} for m in main.get("volumeMounts") or [] if m.get("name") == "artifacts"]
    env = [e for e in main.get("env") or [] if str(e.get("name", "")).startswith("MLKUBE_ARTIFACT_")]
    container: JSON = {
        "name": "read",
        "image": main.get("image"),
        "imagePullPolicy": main.get("imagePullPolicy") or "IfNotPresent",
        "command": ["python", "-c", READER_SCRIPT, uri],
        "env": env,
        "volumeMounts": mounts,
        "securityContext": main.get("securityContext") or {},
    }
    if main.get("resources"):
        container["resources"] = main["resources"]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": name,
            "labels": {C.LABEL_MANAGED_BY: "mlkube-sdk", "mlkube.io/artifact-reader": "true"},
        },
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "activeDeadlineSeconds": 120,
            "securityContext": template.get("securityContext") or {},
            "containers": [container],
            "volumes": volumes,
        },
    }


def profile_rows(profile: Mapping[str, Any]) -> list[JSON]:
    """profile.json as table rows, one per column (features, then the target): kind, role,
    missing values (a count), mean, std, min and max (the outer bin edges), the bin edges and
    fractions of a numeric column, the level shares of a categorical one."""
    rows: list[JSON] = []
    columns = [(f, "feature") for f in profile.get("features") or []]
    if profile.get("targetProfile"):
        columns.append((profile["targetProfile"], "target"))
    for f, role in columns:
        edges = f.get("binEdges") or None
        levels = f.get("levels") or None
        rows.append(
            {
                "column": f.get("name"),
                "role": role,
                "kind": f.get("kind"),
                "missing": f.get("missing"),
                "mean": f.get("mean"),
                "std": f.get("std"),
                "min": edges[0] if edges else None,
                "max": edges[-1] if edges else None,
                "bins": len(f.get("fractions") or levels or []),
                "bin_edges": edges,
                "fractions": f.get("fractions") or None,
                "levels": dict(levels) if levels else None,
            }
        )
    return rows


def trial_rows(run: str, trials: Mapping[str, Any]) -> list[JSON]:
    """A search's trials.json (best first) as comparison rows: `run`, `trial`, `rank`, `ok`,
    `score`, `param.<name>`, `fit_seconds`, `reason`."""
    rows: list[JSON] = []
    for t in trials.get("trials") or []:
        row: JSON = {
            "run": run,
            "trial": t.get("index"),
            "rank": t.get("rank"),
            "ok": t.get("ok"),
            "score": t.get("score"),
        }
        for key, value in sorted((t.get("params") or {}).items()):
            row[f"param.{key}"] = value if not isinstance(value, list | dict) else repr(value)
        row["fit_seconds"] = t.get("fitSeconds")
        row["reason"] = t.get("reason") or ""
        rows.append(row)
    return rows


def trial_rows_from_status(run: str, search: Mapping[str, Any]) -> list[JSON]:
    """The trials a TrainingRun's status keeps (the best few and the first failures), when
    trials.json cannot be read: the same columns as `trial_rows`."""
    table: list[JSON] = []
    for rank, t in enumerate(search.get("top") or [], start=1):
        try:
            params = json.loads(t.get("params") or "{}")
        except ValueError:
            params = {}
        table.append(
            {"index": t.get("index"), "rank": rank, "ok": True, "score": t.get("score"), "params": params}
        )
    for t in search.get("failures") or []:
        table.append({"index": t.get("index"), "ok": False, "reason": t.get("reason")})
    return trial_rows(run, {"trials": table})
