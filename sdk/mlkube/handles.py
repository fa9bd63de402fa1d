"""Handles on live resources: Dataset, Run (a TrainingRun) and Deployment (a ModelDeployment).

A handle is a name, a namespace and a session; every property reads the live object, so a
handle kept in a notebook variable shows the state now, and any number of handles may
point at the same resource. `.wait()` polls until the summary condition settles for the
current generation and turns a failure into the matching exception. The status fields
are parsed with the operator's own status models.
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from mlkube_operator import constants as C
from mlkube_operator.api import DATASET, MODEL_DEPLOYMENT, TRAINING_RUN, Kind
from mlkube_operator.api.dataset import DatasetSpec, DatasetStatus
from mlkube_operator.api.modeldeployment import Analysis, ModelDeploymentSpec, ModelDeploymentStatus
from mlkube_operator.api.trainingrun import ModelArtifact, TrainingRunSpec, TrainingRunStatus

from . import specs
from .errors import (
    DatasetNotReady,
    DataTooLarge,
    InvalidSpec,
    MlkubeError,
    ModelNotReady,
    NotFound,
    PredictionError,
    QualityGateFailed,
    TrainingFailed,
    WaitTimeout,
)
from .progress import Progress
from .session import Session, session

if TYPE_CHECKING:
    import pandas as pd

JSON = dict[str, Any]
POLL_SECONDS = 1.0
CONNECT_RETRIES = 20
CONNECT_RETRY_SECONDS = 0.5


class _Handle:
    KIND: Kind

    def __init__(self, name: str, sess: Session | None = None) -> None:
        self.name = name
        self.session = session(sess)

    @property
    def namespace(self) -> str:
        return self.session.namespace

    def get(self) -> JSON:
        """The live object (NotFound when it is gone)."""
        return self.session.get(self.KIND, self.name)

    @property
    def conditions(self) -> list[JSON]:
        return list((self.get().get("status") or {}).get("conditions") or [])

    def to_yaml(self) -> str:
        """The resource's manifest to commit to Git (spec without defaults, no namespace)."""
        return specs.to_yaml(self.KIND, self.name, self.get().get("spec") or {})

    def delete(self) -> None:
        s = self.session
        s.call(
            (self.KIND.kind, self.name),
            s.custom.delete_namespaced_custom_object,
            C.GROUP,
            C.VERSION,
            s.namespace,
            self.KIND.plural,
            self.name,
        )

    def _summary(self, obj: JSON | None) -> dict[str, Any]:
        return {}

    def __repr__(self) -> str:
        obj = self.session.find(self.KIND, self.name)
        if obj is None:
            return f"<{type(self).__name__} {self.namespace}/{self.name}: not found>"
        cond = specs.condition(obj, self.KIND.summary_condition) or {}
        state = f"{self.KIND.summary_condition}={cond.get('status', '?')} ({cond.get('reason', 'pending')})"
        extra = " ".join(f"{k}={v}" for k, v in self._summary(obj).items() if v is not None)
        return f"<{type(self).__name__} {self.namespace}/{self.name}: {state}{' ' + extra if extra else ''}>"

    def _repr_html_(self) -> str:
        obj = self.session.find(self.KIND, self.name)
        return specs.summary_html(self.KIND.kind, self.name, self.namespace, self._summary(obj), obj)

    def _wait(
        self,
        timeout: float,
        settle: Callable[[JSON], bool],
        describe: Callable[[JSON], str],
        progress: bool,
    ) -> JSON:
        """Poll until `settle(obj)` is true (it raises on failure); WaitTimeout after `timeout` s.

        With `progress`, a bar counts the wait's steps (`specs.wait_step`) and shows the phase."""
        start = time.monotonic()
        shown = Progress(f"{self.KIND.kind}/{self.name}") if progress else None
        last = "no status yet"
        while True:
            obj = self.get()
            last = describe(obj)
            step, total = specs.wait_step(self.KIND.kind, obj)
            try:
                settled = settle(obj)
            except Exception:
                if shown is not None:
                    shown.close(step, total, f"failed: {last}", time.monotonic() - start)
                raise
            if settled:
                if shown is not None:
                    shown.close(step, total, last, time.monotonic() - start)
                return obj
            if shown is not None:
                shown.update(step, total, last, time.monotonic() - start)
            if time.monotonic() - start >= timeout:
                if shown is not None:
                    shown.close(step, total, f"timed out: {last}", time.monotonic() - start)
                raise WaitTimeout(
                    f"not settled after {timeout:g}s; last: {last}",
                    reason="WaitTimeout",
                    kind=self.KIND.kind,
                    name=self.name,
                    namespace=self.namespace,
                )
            time.sleep(POLL_SECONDS)


def _describe(obj: JSON, type_: str) -> str:
    cond = specs.condition(obj, type_)
    if cond is None:
        return "waiting for the operator"
    text = f"{cond.get('reason', '')}"
    return f"{text}: {cond['message']}" if cond.get("message") else text


READER_TIMEOUT_SECONDS = 120.0


def read_artifact(sess: Session, uri: str, job_name: str | None) -> str:
    """The text of an artifact (profile.json, trials.json) where the notebook runs.

    A file:// URI readable here (the artifact volume mounted into a notebook pod) is read
    directly. Otherwise the artifact volume (a PVC) or object store is only reachable in the
    cluster: a short-lived pod made like the operator's Job `job_name` (same image, volume
    and artifact-store credentials) prints the file, its log is read through the API and
    the pod deleted. NotFound when the artifact or the Job is gone.
    """
    parsed = urlparse(uri)
    if parsed.scheme in ("file", "") and parsed.path and Path(parsed.path).is_file():
        return Path(parsed.path).read_text()
    if not job_name:
        raise NotFound(f"no Job to read {uri} with", reason="NoJob", kind="Job", name="")
    job = sess.job_object(job_name)
    pod_name = f"{job_name[:40]}-read-{uuid.uuid4().hex[:6]}"
    sess.create_pod(specs.reader_pod(job, uri, pod_name))
    try:
        deadline = time.monotonic() + READER_TIMEOUT_SECONDS
        while True:
            phase = (sess.pod(pod_name).get("status") or {}).get("phase")
            if phase in ("Succeeded", "Failed"):
                break
            if time.monotonic() > deadline:
                raise WaitTimeout(
                    f"the pod reading {uri} did not finish in {READER_TIMEOUT_SECONDS:g}s (phase {phase})",
                    reason="WaitTimeout",
                    kind="Pod",
                    name=pod_name,
                    namespace=sess.namespace,
                )
            time.sleep(0.5)
        text = sess.pod_log(pod_name)
        if phase == "Failed":
            last = (text.strip().splitlines() or ["no output"])[-1]
            raise NotFound(
                f"cannot read {uri}: {last}", reason="ArtifactUnreadable", kind="Pod", name=pod_name
            )
        return text
    finally:
        sess.delete_pod(pod_name)


# -- Dataset ------------------------------------------------------------------------------------


class Dataset(_Handle):
    """A Dataset: `Dataset.from_dataframe(df, name=..., target=...)`, `from_csv`, `from_url`,
    `from_s3`, `from_sql`, or `Dataset(name)` for one that exists."""

    KIND = DATASET

    @classmethod
    def create(cls, name: str, spec: DatasetSpec | Mapping[str, Any], sess: Session | None = None) -> Dataset:
        s = session(sess)
        model = (
            spec if isinstance(spec, DatasetSpec) else specs.parse_spec(DatasetSpec, spec, "Dataset", name)
        )
        s.apply(DATASET, specs.manifest(DATASET, name, model))
        return cls(name, s)

    @classmethod
    def get_existing(cls, name: str, sess: Session | None = None) -> Dataset:
        """A handle on an existing Dataset; NotFound when there is none."""
        handle = cls(name, sess)
        handle.get()
        return handle

    @classmethod
    def from_csv_text(
        cls, text: str, *, name: str, target: str, sess: Session | None = None, **spec: Any
    ) -> Dataset:
        """CSV text (with a header row) into the ConfigMap `<name>-data`, owned by the Dataset."""
        size = len(text.encode())
        if size > specs.CONFIGMAP_LIMIT_BYTES:
            raise DataTooLarge(
                f"the CSV is {size:,} bytes, more than a ConfigMap holds ({specs.CONFIGMAP_LIMIT_BYTES:,}); "
                "upload it to object storage with from_dataframe(..., upload='s3://bucket/prefix', "
                "endpoint=..., credentials_secret=...), or put it where the cluster can read it "
                "and use Dataset.from_url, from_s3 or from_sql",
                reason="DataTooLarge",
                kind="Dataset",
                name=name,
            )
        s = session(sess)
        cm_name = f"{name}-data"
        model = specs.parse_spec(
            DatasetSpec,
            {
                "source": {"configMap": {"name": cm_name, "key": specs.CONFIGMAP_KEY}},
                "target": target,
                **spec,
            },
            "Dataset",
            name,
        )
        # The data first (a Dataset without its ConfigMap would wait 30 s for a re-read), then
        # the Dataset, then the ConfigMap's owner: deleting the Dataset deletes its data.
        s.apply_configmap(cm_name, {specs.CONFIGMAP_KEY: text})
        live = s.apply(DATASET, specs.manifest(DATASET, name, model))
        s.apply_configmap(cm_name, {specs.CONFIGMAP_KEY: text}, owner=live)
        return cls(name, s)

    @classmethod
    def from_dataframe(
        cls,
        df: pd.DataFrame,
        *,
        name: str,
        target: str,
        upload: str | None = None,
        endpoint: str | None = None,
        region: str = "us-east-1",
        credentials_secret: str | None = None,
        sess: Session | None = None,
        **spec: Any,
    ) -> Dataset:
        """A local table as a Dataset; see docs/sdk.md.

        Without `upload`: stored in a ConfigMap, at most 1,000,000 bytes as CSV (DataTooLarge
        otherwise). With `upload="s3://bucket/prefix"`: written as Parquet to that
        S3-compatible store (`endpoint`, unset for AWS; the notebook's AWS_ACCESS_KEY_ID /
        AWS_SECRET_ACCESS_KEY) and read by the cluster with the Secret `credentials_secret`.
        """
        if target not in df.columns:
            raise InvalidSpec(
                f"spec.target: {target!r} is not a column ({', '.join(map(str, df.columns))})",
                reason="InvalidSpec",
                kind="Dataset",
                name=name,
            )
        if upload is None:
            return cls.from_csv_text(df.to_csv(index=False), name=name, target=target, sess=sess, **spec)
        from .upload import upload_table

        s = session(sess)
        specs.parse_spec(
            DatasetSpec,
            {"source": {"s3": {"uri": "s3://check/x.parquet"}}, "target": target, **spec},
            "Dataset",
            name,
        )  # a bad spec is refused before anything is written
        uri = upload_table(df, upload, s.namespace, name, endpoint, region)
        return cls.from_s3(
            uri,
            name=name,
            target=target,
            format="parquet",
            endpoint=endpoint,
            region=region,
            credentials_secret=credentials_secret,
            sess=s,
            **spec,
        )

    @classmethod
    def from_csv(
        cls,
        path: str | Path,
        *,
        name: str,
        target: str,
        upload: str | None = None,
        sess: Session | None = None,
        **kwargs: Any,
    ) -> Dataset:
        """A local CSV file: in a ConfigMap (at most 1,000,000 bytes), or with `upload` (and
        `endpoint`, `region`, `credentials_secret`) as Parquet in object storage."""
        if upload is not None:
            import pandas as pd

            return cls.from_dataframe(
                pd.read_csv(path), name=name, target=target, upload=upload, sess=sess, **kwargs
            )
        return cls.from_csv_text(Path(path).read_text(), name=name, target=target, sess=sess, **kwargs)

    @classmethod
    def from_url(
        cls, url: str, *, name: str, target: str, sess: Session | None = None, **spec: Any
    ) -> Dataset:
        """CSV served over http(s), read by the profile Job in the cluster."""
        return cls.create(name, {"source": {"url": url}, "target": target, **spec}, sess)

    @classmethod
    def from_s3(
        cls,
        uri: str,
        *,
        name: str,
        target: str,
        format: str = "parquet",
        endpoint: str | None = None,
        region: str | None = None,
        credentials_secret: str | None = None,
        sess: Session | None = None,
        **spec: Any,
    ) -> Dataset:
        """CSV or Parquet in S3-compatible storage (see docs/data-sources.md)."""
        source: JSON = {"uri": uri, "format": format}
        if endpoint:
            source["endpoint"] = endpoint
        if region:
            source["region"] = region
        if credentials_secret:
            source["credentialsSecret"] = {"name": credentials_secret}
        return cls.create(name, {"source": {"s3": source}, "target": target, **spec}, sess)

    @classmethod
    def from_sql(
        cls,
        query: str,
        *,
        name: str,
        target: str,
        connection_secret: tuple[str, str],
        sess: Session | None = None,
        **spec: Any,
    ) -> Dataset:
        """A PostgreSQL query; `connection_secret` is (Secret name, key) of a postgresql:// URL."""
        secret = {"name": connection_secret[0], "key": connection_secret[1]}
        return cls.create(
            name,
            {"source": {"sql": {"query": query, "connectionSecret": secret}}, "target": target, **spec},
            sess,
        )

    @property
    def status(self) -> DatasetStatus:
        return DatasetStatus.model_validate(self.get().get("status") or {})

    @property
    def ready(self) -> bool:
        cond = specs.condition(self.get(), C.READY)
        return bool(cond and cond.get("status") == "True")

    def wait(self, timeout: float = 300, progress: bool = True) -> Dataset:
        """Until Ready; DatasetNotReady (InvalidSpec) when it failed, WaitTimeout after `timeout` s."""

        def settle(obj: JSON) -> bool:
            cond = specs.condition(obj, C.READY)
            if cond is None or cond.get("status") == "Unknown":
                return False
            if cond.get("status") == "True":
                return True
            raise _failure(
                InvalidSpec if cond.get("reason") == C.REASON_INVALID_SPEC else DatasetNotReady, obj, cond
            )

        self._wait(timeout, settle, lambda o: _describe(o, C.READY), progress)
        return self

    @property
    def profile(self) -> pd.DataFrame:
        """The profile, one row per column (`specs.profile_rows`: role, kind, missing, mean, std,
        min, max, bins, bin_edges, fractions, levels), read from profile.json wherever it is
        (see `read_artifact`). NotFound before the Dataset was profiled."""
        import pandas as pd

        status = self.status
        if not status.profile_uri:
            raise NotFound(
                "the Dataset has no profile yet", reason="NotProfiled", kind="Dataset", name=self.name
            )
        data = json.loads(read_artifact(self.session, status.profile_uri, status.job_name))
        return pd.DataFrame(specs.profile_rows(data)).set_index("column")

    def _summary(self, obj: JSON | None) -> dict[str, Any]:
        st = (obj or {}).get("status") or {}
        return {"rows": st.get("rows"), "columns": st.get("columns"), "target": st.get("target")}


# -- TrainingRun ----------------------------------------------------------------------------------

_RUN_FAILURES: dict[str, type[TrainingFailed] | type[InvalidSpec]] = {
    C.REASON_QUALITY_GATE_FAILED: QualityGateFailed,
    C.REASON_INVALID_SPEC: InvalidSpec,
}


def _failure(cls: type[Any], obj: JSON, cond: JSON) -> Exception:
    meta = obj.get("metadata") or {}
    err: Exception = cls(
        str(cond.get("message") or ""),
        reason=str(cond.get("reason") or ""),
        kind=str(obj.get("kind") or ""),
        name=str(meta.get("name") or ""),
        namespace=str(meta.get("namespace") or ""),
    )
    return err


class Run(_Handle):
    """A TrainingRun: made by `mlkube.train(...)`, or `Run(name)` for one that exists."""

    KIND = TRAINING_RUN

    @property
    def status(self) -> TrainingRunStatus:
        return TrainingRunStatus.model_validate(self.get().get("status") or {})

    @property
    def metrics(self) -> dict[str, float]:
        """The held-out metrics (also of a run that missed its quality gate)."""
        return dict(self.status.metrics or {})

    @property
    def model(self) -> ModelArtifact | None:
        """The model's URI, sha256 and size, once trained."""
        return self.status.model

    @property
    def dataset(self) -> Dataset:
        spec = self.get().get("spec") or {}
        return Dataset(str((spec.get("datasetRef") or {}).get("name")), self.session)

    def wait(self, timeout: float = 600, progress: bool = True) -> Run:
        """Until Succeeded, showing the phase, the elapsed time and the Job's state.

        Raises QualityGateFailed, InvalidSpec, TrainingFailed (any other failure),
        DatasetNotReady (its Dataset is missing or failed), WaitTimeout.
        """

        def settle(obj: JSON) -> bool:
            cond = specs.condition(obj, C.SUCCEEDED)
            if cond is None:
                return False
            if cond.get("status") == "True":
                return True
            if cond.get("status") == "False":
                raise _failure(_RUN_FAILURES.get(str(cond.get("reason")), TrainingFailed), obj, cond)
            if cond.get("reason") == C.REASON_DATASET_NOT_READY:
                ds = self.session.find(DATASET, str(obj["spec"]["datasetRef"]["name"]))
                ds_cond = specs.condition(ds, C.READY)
                if ds is None or (ds_cond is not None and ds_cond.get("status") == "False"):
                    raise _failure(DatasetNotReady, obj, cond)
            return False

        def describe(obj: JSON) -> str:
            text = _describe(obj, C.SUCCEEDED)
            job_name = (obj.get("status") or {}).get("jobName")
            if job_name:
                job = self.session.job(str(job_name))
                st = (job or {}).get("status") or {}
                counts = ", ".join(f"{k} {st[k]}" for k in ("active", "succeeded", "failed") if st.get(k))
                text += f" | Job {job_name}: {counts or 'starting'}"
            return text

        self._wait(timeout, settle, describe, progress)
        return self

    @property
    def trials(self) -> pd.DataFrame:
        """A search run's trials, best first, one row per trial (`specs.trial_rows`: run, trial,
        rank, ok, score, param.*, fit_seconds, reason): the full table from trials.json
        (see `read_artifact`), else the best few and first failures its status keeps. An
        empty table for a run without a search or before its search finished."""
        import pandas as pd

        search = (self.get().get("status") or {}).get("search") or {}
        rows: list[JSON] = []
        if search.get("trialsUri"):
            try:
                data = json.loads(
                    read_artifact(self.session, str(search["trialsUri"]), search.get("jobName"))
                )
                rows = specs.trial_rows(self.name, data)
            except (MlkubeError, ValueError):  # unreadable, gone, or no RBAC for reader pods
                rows = []
        if not rows:
            rows = specs.trial_rows_from_status(self.name, search)
        columns = ["run", "trial", "rank", "ok", "score"]
        return pd.DataFrame(rows, columns=None if rows else columns)

    def logs(self, tail_lines: int | None = None) -> str:
        """The logs of the pods of the run's Job (oldest pod first), each under a `==> pod <==` header."""
        job_name = (self.get().get("status") or {}).get("jobName")
        if not job_name:
            raise NotFound(
                "the run has no Job yet",
                reason="NoJob",
                kind="TrainingRun",
                name=self.name,
                namespace=self.namespace,
            )
        pods = self.session.job_pods(str(job_name))
        if not pods:
            raise NotFound(
                f"Job {job_name} has no pods (left)", reason="NoPods", kind="TrainingRun", name=self.name
            )
        parts = []
        for pod in pods:
            pod_name = pod["metadata"]["name"]
            parts.append(f"==> {pod_name} <==\n{self.session.pod_log(pod_name, tail_lines=tail_lines)}")
        return "\n".join(parts)

    def _summary(self, obj: JSON | None) -> dict[str, Any]:
        spec = (obj or {}).get("spec") or {}
        st = (obj or {}).get("status") or {}
        metrics = st.get("metrics") or {}
        return {
            "estimator": (spec.get("estimator") or {}).get("className"),
            "dataset": (spec.get("datasetRef") or {}).get("name"),
            **{k: round(v, 4) for k, v in sorted(metrics.items()) if isinstance(v, float | int)},
            "sha256": ((st.get("model") or {}).get("sha256") or "")[:12] or None,
        }


def _short_name(estimator: str) -> str:
    return estimator.rsplit(".", 1)[-1].lower()[:24]


def train(
    dataset: Dataset | str,
    estimator: Any,
    params: Mapping[str, Any] | None = None,
    *,
    name: str | None = None,
    quality_gate: Mapping[str, Any] | None = None,
    metrics: Sequence[str] | None = None,
    split: Mapping[str, Any] | None = None,
    search: Mapping[str, Any] | None = None,
    session: Session | None = None,
    **spec: Any,
) -> Run:
    """Create a TrainingRun and return its handle (call `.wait()` on it).

    `estimator` is a class path (`"sklearn.ensemble.RandomForestClassifier"`), a class, or an
    unfitted estimator instance (its non-default `get_params(deep=False)`); `params` override.
    The operator allows only its allowed prefixes (sklearn.* by default): another class is
    refused with InvalidSpec by `.wait()`. `name` defaults to `<dataset>-<class>-<5 hex>`.
    Other keyword arguments are spec fields (`backoff_limit`, `active_deadline_seconds`, ...).
    """
    from .session import session as resolve

    s = resolve(session)
    ds_name = dataset.name if isinstance(dataset, Dataset) else dataset
    s.get(DATASET, ds_name)  # NotFound now, not a run waiting for a Dataset that never comes
    est = specs.estimator_spec(estimator, params)
    run_name = name or f"{ds_name}-{_short_name(est.class_name)}-{uuid.uuid4().hex[:5]}"
    body: JSON = {
        "datasetRef": {"name": ds_name},
        "estimator": est.model_dump(mode="json", by_alias=True),
        **spec,
    }
    if quality_gate is not None:
        body["qualityGate"] = dict(quality_gate)
    if metrics is not None:
        body["metrics"] = list(metrics)
    if split is not None:
        body["split"] = dict(split)
    if search is not None:
        body["search"] = dict(search)
    model = specs.parse_spec(TrainingRunSpec, body, "TrainingRun", run_name)
    s.apply(TRAINING_RUN, specs.manifest(TRAINING_RUN, run_name, model))
    return Run(run_name, s)


def runs(session: Session | None = None) -> list[Run]:
    """Every TrainingRun of the namespace, oldest first."""
    from .session import session as resolve

    s = resolve(session)
    items = sorted(
        s.list_objects(TRAINING_RUN), key=lambda o: str(o["metadata"].get("creationTimestamp") or "")
    )
    return [Run(o["metadata"]["name"], s) for o in items]


def compare(runs: Sequence[Run | str], session: Session | None = None, trials: bool = False) -> pd.DataFrame:
    """A table of the runs' parameters (`param.*`) and metrics (`metric.*`), one row per run.

    With `trials=True` a search run gives one row per trial instead (its `Run.trials`: column
    `trial`, `rank`, `ok`, cross-validated `score`, the trial's `param.*`), best first; a run
    without a search keeps its one row (empty `trial`).
    """
    import pandas as pd

    from .session import session as resolve

    s = resolve(session)
    objs = [s.get(TRAINING_RUN, r.name if isinstance(r, Run) else r) for r in runs]
    if not trials:
        frame = pd.DataFrame(specs.comparison_rows(objs))
        return frame.set_index("run") if not frame.empty else frame
    parts: list[pd.DataFrame] = []
    for obj in objs:
        name = obj["metadata"]["name"]
        if (obj.get("spec") or {}).get("search"):
            table = Run(name, s).trials
            if not table.empty:
                table.insert(1, "estimator", (obj["spec"].get("estimator") or {}).get("className", ""))
                parts.append(table)
                continue
        row = pd.DataFrame(specs.comparison_rows([obj]))
        row.insert(1, "trial", None)
        parts.append(row)
    frame = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    return frame.set_index("run") if not frame.empty else frame


# -- ModelDeployment ------------------------------------------------------------------------------


class Predictions(list[Any]):
    """The predictions of one request, in row order; `.id` is its feedback id."""

    id: str = ""


def _rows(x: Any) -> list[Any]:
    """A DataFrame (rows keyed by column), a 2-D array or a list of rows as JSON rows."""
    if hasattr(x, "to_dict") and hasattr(x, "columns"):
        records = x.to_dict(orient="records")
        return [{str(k): _cell(v) for k, v in r.items()} for r in records]
    if hasattr(x, "tolist"):
        x = x.tolist()
    rows = list(x)
    if rows and not isinstance(rows[0], list | tuple | dict):
        rows = [rows]
    return [
        {str(k): _cell(v) for k, v in r.items()} if isinstance(r, dict) else [_cell(v) for v in r]
        for r in rows
    ]


def _cell(v: Any) -> Any:
    item = getattr(v, "item", None)
    if callable(item) and getattr(v, "shape", None) == ():
        v = item()
    if isinstance(v, float) and v != v:  # NaN is a missing value
        return None
    return v


def v2_inputs(rows: list[Any]) -> list[JSON]:
    """Open Inference Protocol V2 input tensors for JSON rows (see `_rows`): rows keyed by
    column become one [N] tensor per column (BYTES when a value is text, FP64 otherwise);
    lists become one FP64 [N, F] tensor `input-0`."""
    if rows and isinstance(rows[0], dict):
        tensors = []
        for column in rows[0]:
            data = [r.get(column) for r in rows]
            text = any(isinstance(v, str) for v in data)
            tensors.append(
                {"name": column, "shape": [len(rows)], "datatype": "BYTES" if text else "FP64", "data": data}
            )
        return tensors
    width = len(rows[0]) if rows else 0
    return [{"name": "input-0", "shape": [len(rows), width], "datatype": "FP64", "data": rows}]


class Deployment(_Handle):
    """A ModelDeployment: made by `mlkube.deploy(run, ...)`, or `Deployment(name)`."""

    KIND = MODEL_DEPLOYMENT

    @property
    def status(self) -> ModelDeploymentStatus:
        return ModelDeploymentStatus.model_validate(self.get().get("status") or {})

    @property
    def analysis(self) -> Analysis | None:
        """The last degradation verdict (`verdict`, `reasons`, `values`), once one ran."""
        return self.status.last_analysis

    def history(self) -> pd.DataFrame:
        """The deployment's timeline, oldest first: rollouts, canary steps and verdicts,
        rollbacks, degradation verdicts, retrains and manual actions from its Events, and
        what its status keeps (the last analysis with its drift and accuracy values, rejected
        models, the state). Columns: `specs.HISTORY_COLUMNS`; see docs/sdk.md."""
        import pandas as pd

        obj = self.get()
        events = self.session.events(self.KIND.kind, self.name, obj["metadata"].get("uid"))
        frame = pd.DataFrame(specs.history_rows(obj, events), columns=specs.HISTORY_COLUMNS)
        frame["time"] = pd.to_datetime(frame["time"], utc=True)
        return frame

    def plot_history(self, ax: Any = None) -> Any:
        """A timeline chart of `history()`: one row of markers per category (Warnings in red);
        returns the matplotlib Axes."""
        import matplotlib.pyplot as plt

        frame = self.history()
        if ax is None:
            _, ax = plt.subplots(figsize=(8.0, 3.0))
        categories = sorted(set(frame["category"]))
        for y, category in enumerate(categories):
            rows = frame[frame["category"] == category]
            warn = rows["type"] == "Warning"
            ax.scatter(rows["time"][~warn], [y] * int((~warn).sum()), marker="o", color="tab:blue")
            ax.scatter(rows["time"][warn], [y] * int(warn.sum()), marker="x", color="tab:red")
        ax.set_yticks(range(len(categories)), categories)
        ax.set_title(f"ModelDeployment {self.name}")
        ax.figure.autofmt_xdate()
        return ax

    def wait(self, timeout: float = 300, progress: bool = True) -> Deployment:
        """Until Ready (serving on every replica). ModelNotReady when its TrainingRun is missing or
        failed, InvalidSpec, WaitTimeout."""

        def settle(obj: JSON) -> bool:
            cond = specs.condition(obj, C.READY)
            if cond is None:
                return False
            if cond.get("status") == "True":
                return True
            if cond.get("reason") == C.REASON_INVALID_SPEC:
                raise _failure(InvalidSpec, obj, cond)
            if cond.get("reason") == C.REASON_MODEL_NOT_READY:
                run_name = str(obj["spec"]["model"]["trainingRunRef"]["name"])
                run = self.session.find(TRAINING_RUN, run_name)
                run_cond = specs.condition(run, C.SUCCEEDED)
                if run is None or (run_cond is not None and run_cond.get("status") == "False"):
                    why = (
                        f"TrainingRun {run_name} not found"
                        if run is None
                        else f"TrainingRun {run_name} failed: {run_cond.get('reason') if run_cond else ''}"
                        f" {run_cond.get('message', '') if run_cond else ''}".rstrip()
                    )
                    raise _failure(ModelNotReady, obj, {**cond, "message": why})
            return False

        def describe(obj: JSON) -> str:
            st = obj.get("status") or {}
            text = _describe(obj, C.READY)
            if st.get("stateSummary"):
                text = f"{st['stateSummary']} ({st.get('readyReplicas') or 0}/{obj['spec'].get('replicas', 1)} ready) {text}"
            return text

        self._wait(timeout, settle, describe, progress)
        return self

    @property
    def url(self) -> str:
        """http://<ClusterIP>:<port> of the Service (reachable from pods, and from the host on the dev cluster)."""
        svc = self.session.service(self.name)
        spec = svc.get("spec") or {}
        ip = spec.get("clusterIP")
        ports = spec.get("ports") or []
        if not ip or ip == "None" or not ports:
            raise NotFound(
                "the Service has no ClusterIP or port", reason="NoClusterIP", kind="Service", name=self.name
            )
        return f"http://{ip}:{ports[0]['port']}"

    def _post(self, path: str, body: JSON, timeout: float) -> JSON:
        req = urllib.request.Request(
            self.url + path, json.dumps(body).encode(), {"Content-Type": "application/json"}
        )
        # A refused connection right after Ready is kube-proxy not yet routing the Service to
        # the new endpoints (it syncs after the pods turn ready): retried, at most CONNECT_RETRIES
        # times, CONNECT_RETRY_SECONDS apart. Any other failure is answered at once.
        for attempt in range(CONNECT_RETRIES + 1):
            try:
                return self._send(req, timeout)
            except PredictionError as err:
                if err.reason != "ConnectionRefused" or attempt == CONNECT_RETRIES:
                    raise
                time.sleep(CONNECT_RETRY_SECONDS)
        raise AssertionError("unreachable")  # pragma: no cover

    def _send(self, req: urllib.request.Request, timeout: float) -> JSON:
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                out: JSON = json.loads(resp.read())
        except urllib.error.HTTPError as err:
            text = err.read().decode("utf-8", "replace")
            with contextlib.suppress(ValueError, AttributeError):
                text = str(json.loads(text).get("error") or text)
            if not text.strip():  # not the model server's answer (it always says why)
                server = err.headers.get("server") if err.headers else None
                text = f"{req.full_url} answered HTTP {err.code} with an empty body" + (
                    f" (server {server!r})" if server else ""
                )
            raise PredictionError(
                text,
                reason=f"HTTP{err.code}",
                kind="ModelDeployment",
                name=self.name,
                namespace=self.namespace,
            ) from None
        except OSError as err:
            refused = isinstance(getattr(err, "reason", err), ConnectionRefusedError)
            raise PredictionError(
                str(err),
                reason="ConnectionRefused" if refused else "Unreachable",
                kind="ModelDeployment",
                name=self.name,
                namespace=self.namespace,
            ) from None
        return out

    def predict(self, x: Any, timeout: float = 30, protocol: str = "v1") -> Predictions:
        """Predictions for the rows of `x` (a DataFrame with the feature columns, a 2-D array or
        a list of rows) through the Service; `.id` of the answer is for feedback.

        `protocol="v1"` (KServe V1, the default) or `"v2"` (Open Inference Protocol: one tensor
        per column for a DataFrame, BYTES for text columns; one FP64 [N, F] tensor otherwise).
        """
        rows = _rows(x)
        if protocol == "v1":
            out = self._post(f"/v1/models/{self.name}:predict", {"instances": rows}, timeout)
            result = Predictions(out.get("predictions") or [])
            result.id = str(out.get("feedbackId") or out.get("id") or "")
            return result
        if protocol != "v2":
            raise InvalidSpec(f"protocol must be 'v1' or 'v2', not {protocol!r}", reason="InvalidSpec")
        out = self._post(f"/v2/models/{self.name}/infer", {"inputs": v2_inputs(rows)}, timeout)
        first = next((o for o in out.get("outputs") or [] if o.get("name") == "predict"), None)
        result = Predictions((first or {}).get("data") or [])
        result.id = str((out.get("parameters") or {}).get("mlkube_feedback_id") or out.get("id") or "")
        return result

    def feedback(self, request_id: str, label: Any, timeout: float = 30) -> JSON:
        """The true label(s) of a prediction request (a list for a request of several rows);
        answers `{"accepted", "unknownIds", "scoredRows"}`."""
        labels = (
            _rows([label])[0] if isinstance(label, list | tuple) or hasattr(label, "tolist") else _cell(label)
        )
        return self._post(
            f"/v2/models/{self.name}/feedback", {"feedback": [{"id": request_id, "label": labels}]}, timeout
        )

    def _summary(self, obj: JSON | None) -> dict[str, Any]:
        st = (obj or {}).get("status") or {}
        return {
            "state": st.get("stateSummary"),
            "model": (st.get("currentModel") or {}).get("trainingRun"),
            "sha256": (st.get("currentModel") or {}).get("shortSha256"),
            "replicas": st.get("readyReplicas"),
            "verdict": (st.get("lastAnalysis") or {}).get("verdict"),
        }


def deploy(
    run: Run | str,
    *,
    name: str | None = None,
    replicas: int = 1,
    strategy: Mapping[str, Any] | None = None,
    monitoring: Mapping[str, Any] | None = None,
    on_degradation: Mapping[str, Any] | None = None,
    session: Session | None = None,
    **spec: Any,
) -> Deployment:
    """Serve a TrainingRun's model as a ModelDeployment (default name: the run's) and return its
    handle (call `.wait()`); the fields take the same dicts as the YAML (camelCase keys)."""
    from .session import session as resolve

    s = resolve(session)
    run_name = run.name if isinstance(run, Run) else run
    md_name = name or run_name
    body: JSON = {"model": {"trainingRunRef": {"name": run_name}}, "replicas": replicas, **spec}
    if strategy is not None:
        body["strategy"] = dict(strategy)
    if monitoring is not None:
        body["monitoring"] = dict(monitoring)
    if on_degradation is not None:
        body["onDegradation"] = dict(on_degradation)
    model = specs.parse_spec(ModelDeploymentSpec, body, "ModelDeployment", md_name)
    s.apply(MODEL_DEPLOYMENT, specs.manifest(MODEL_DEPLOYMENT, md_name, model))
    return Deployment(md_name, s)


def plot(
    runs: Sequence[Run | str], metric: str = "accuracy", ax: Any = None, session: Session | None = None
) -> Any:
    """A bar chart of one metric across runs (from `compare`); returns the matplotlib Axes.

    Runs without the metric (failed early) show no bar. In Jupyter the figure is shown inline.
    """
    import matplotlib.pyplot as plt

    frame = compare(runs, session=session)
    column = f"metric.{metric}"
    if column not in frame.columns:
        raise InvalidSpec(
            f"no run has the metric {metric!r} (have: {', '.join(c[7:] for c in frame.columns if c.startswith('metric.'))})",
            reason="UnknownMetric",
        )
    if ax is None:
        _, ax = plt.subplots(figsize=(max(4.0, 1.2 * len(frame)), 3.0))
    labels = [
        f"{name}\n{est.rsplit('.', 1)[-1]}" for name, est in zip(frame.index, frame["estimator"], strict=True)
    ]
    ax.bar(range(len(frame)), frame[column].astype(float).fillna(0.0), tick_label=labels)
    ax.set_ylabel(metric)
    ax.set_title(f"{metric} by run")
    ax.tick_params(axis="x", labelsize=7)
    return ax
