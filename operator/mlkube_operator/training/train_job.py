"""The training Job: verified data in, a model with a receipt out.

The Job trusts nothing it was handed: the dataset bytes must hash to the contentHash
the Dataset reported (else the lineage in status would be a lie), the estimator path
must pass the allow-list before it is imported, and the parameters must pass
scikit-learn's own validation before any data is split. Cheap checks come first so
a hopeless spec fails in a second, not after a long fit.

The model is saved even when the quality gate is missed: the run's status still
points at it (with its sha256) so the user can inspect what failed the gate, but the
TrainingRun is not Succeeded, so nothing deploys it.
"""

from __future__ import annotations

import io
import json
import sys
import time
import warnings
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from mlkube_operator import artifacts
from mlkube_operator.api.trainingrun import TrainingRunSpec

from .artifacts import ArtifactStore, open_store, sha256_bytes
from .canonical import column_kind
from .contract import CLASSIFICATION, METADATA_FILE, MODEL_FILE, Reason
from .errors import JobFailure, log
from .estimators import InvalidParameterError, build_estimator, check_task, json_params, resolve_class
from .metrics import evaluate, gate_failure, plan_metrics
from .pipeline import build_pipeline, model_input
from .profiling import class_labels, infer_task
from .reference import reference_predictions
from .sources import parse_canonical

_MAX_WARNINGS = 5
_MAX_WARNING_CHARS = 300


@dataclass(frozen=True)
class TrainRequest:
    spec: TrainingRunSpec
    namespace: str
    name: str
    uid: str
    generation: int
    data_uri: str
    dataset_hash: str
    target: str
    artifact_root: str  # a local directory or an s3://bucket/prefix
    allowed_prefixes: tuple[str, ...]
    follow_round: int = 0  # retrains that followed new Dataset contents (datasetPolicy: Follow)


def read_verified(data_uri: str, expected_hash: str, store: ArtifactStore) -> bytes:
    """The dataset bytes, after checking they are the ones the Dataset's contentHash names."""
    try:
        data = store.read(data_uri)
    except ValueError as err:
        raise JobFailure(Reason.INVALID_SPEC, f"--data-uri: {err}") from err
    except FileNotFoundError as err:
        raise JobFailure(Reason.DATASET_UNAVAILABLE, f"dataset file {data_uri} does not exist") from err
    except OSError as err:
        raise JobFailure(
            Reason.DATASET_UNAVAILABLE, f"dataset file {data_uri} cannot be read: {err}", permanent=False
        ) from err
    actual = sha256_bytes(data)
    if actual != expected_hash.strip().lower():
        raise JobFailure(
            Reason.DATASET_HASH_MISMATCH,
            f"dataset file {data_uri} has sha256 {actual}, but the Dataset's contentHash is {expected_hash}",
        )
    return data


def run_train(req: TrainRequest) -> dict[str, Any]:
    """Train, evaluate and save; return the success termination message (or raise JobFailure)."""
    spec = req.spec
    class_path = spec.estimator.class_name
    cls = resolve_class(class_path, req.allowed_prefixes)
    store = open_store(req.artifact_root)
    frame = parse_canonical(read_verified(req.data_uri, req.dataset_hash, store))
    if req.target not in frame.columns:
        raise JobFailure(Reason.INVALID_SPEC, f"--target: column {req.target!r} is not in the dataset")
    features = [str(c) for c in frame.columns if c != req.target]
    task = infer_task(frame[req.target])
    wanted = plan_metrics(task, spec.metrics, spec.quality_gate)
    estimator = build_estimator(cls, spec.estimator.params, spec.split.seed)
    check_task(estimator, class_path, task)

    notes: list[str] = []
    known = frame[req.target].notna()
    if not known.all():
        notes.append(f"dropped {int((~known).sum())} rows with a missing target")
        frame = frame.loc[known]
    y = class_labels(frame[req.target]) if task == CLASSIFICATION else frame[req.target].astype("float64")
    x = model_input(frame, features)
    x_train, x_test, y_train, y_test, stratified = _split(x, y, task, spec, notes)
    if task == CLASSIFICATION and y_train.nunique() < 2:
        raise JobFailure(
            Reason.TRAINING_FAILED,
            f"the training split holds a single class ({_plain(y_train.iloc[0])!r}): nothing to classify",
        )
    log(
        f"train: {class_path} on {len(x_train)} rows ({task}), testing on {len(x_test)}; {len(features)} features"
    )

    model = build_pipeline(x, features, estimator)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        started = time.perf_counter()
        try:
            model.fit(x_train, y_train)
        except InvalidParameterError as err:
            raise JobFailure(Reason.INVALID_PARAMETERS, str(err)) from err
        train_seconds = time.perf_counter() - started
    fit_warnings = _summarise(caught)
    values, skipped = evaluate(model, x_test, y_test, task, wanted)
    log(
        f"train: fitted in {train_seconds:.3f} s; metrics {values}"
        + (f"; skipped {skipped}" if skipped else "")
    )

    directory = str(artifacts.model_dir(req.namespace, req.name, req.uid, req.generation, req.follow_round))
    buffer = io.BytesIO()
    import joblib
    import sklearn

    joblib.dump(model, buffer)
    model_bytes = buffer.getvalue()
    model_sha = sha256_bytes(model_bytes)
    model_uri = store.write(f"{directory}/{MODEL_FILE}", model_bytes)
    classes = [_plain(c) for c in model.classes_] if task == CLASSIFICATION else None
    metadata = {
        "estimator": class_path,
        "task": task,
        "target": req.target,
        "featureNames": features,
        "schema": [{"name": f, "dtype": column_kind(x[f])} for f in features],
        "classes": classes,
        "sklearnVersion": sklearn.__version__,
        "datasetHash": req.dataset_hash,
        "modelSha256": model_sha,
        "metrics": values,
        "params": json_params(estimator),
        "split": {
            "testFraction": spec.split.test_fraction,
            "seed": spec.split.seed,
            "stratified": stratified,
            "trainRows": len(x_train),
            "testRows": len(x_test),
        },
        "trainingRun": {
            "namespace": req.namespace,
            "name": req.name,
            "uid": req.uid,
            "generation": req.generation,
        },
        "referencePredictions": reference_predictions(model, x_test, y_test, task),
        "createdAt": datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
    }
    metadata_uri = store.write(
        f"{directory}/{METADATA_FILE}", (json.dumps(metadata, indent=1) + "\n").encode("utf-8")
    )
    log(f"train: wrote {model_uri} ({len(model_bytes)} bytes, sha256 {model_sha})")

    result: dict[str, Any] = {
        "task": task,
        "metrics": values,
        "model": {
            "uri": model_uri,
            "sha256": model_sha,
            "sizeBytes": len(model_bytes),
            "datasetHash": req.dataset_hash,
            "metadataUri": metadata_uri,
        },
        "trainSeconds": round(train_seconds, 3),
        "rows": {"train": len(x_train), "test": len(x_test)},
        "stratified": stratified,
    }
    if skipped:
        result["skippedMetrics"] = skipped
    if notes:
        result["notes"] = notes
    if fit_warnings:
        result["warnings"] = fit_warnings
    failure = gate_failure(spec.quality_gate, values, skipped)
    if failure is not None:
        raise JobFailure(Reason.QUALITY_GATE_FAILED, failure, details=result)
    return {"ok": True, **result}


def _split(
    x: Any, y: Any, task: str, spec: TrainingRunSpec, notes: list[str]
) -> tuple[Any, Any, Any, Any, bool]:
    from sklearn.model_selection import train_test_split

    fraction, seed = spec.split.test_fraction, spec.split.seed
    if task == CLASSIFICATION and spec.split.stratify:
        counts = y.value_counts()
        if len(counts) and int(counts.min()) < 2:
            label = counts.idxmin()
            notes.append(
                f"stratified split impossible: class {_plain(label)!r} has {int(counts.min())} member(s);"
                " used an unstratified split"
            )
        else:
            try:
                parts = train_test_split(x, y, test_size=fraction, random_state=seed, stratify=y)
                return parts[0], parts[1], parts[2], parts[3], True
            except ValueError as err:
                notes.append(f"stratified split impossible ({err}); used an unstratified split")
    try:
        parts = train_test_split(x, y, test_size=fraction, random_state=seed)
    except ValueError as err:
        raise JobFailure(
            Reason.INVALID_SPEC, f"spec.split.testFraction: cannot split {len(x)} rows: {err}"
        ) from err
    return parts[0], parts[1], parts[2], parts[3], False


def _summarise(caught: list[warnings.WarningMessage]) -> list[str]:
    seen: list[str] = []
    for item in caught:
        text = f"{item.category.__name__}: {item.message}".strip()
        if len(text) > _MAX_WARNING_CHARS:
            text = text[: _MAX_WARNING_CHARS - 1] + "…"
        if text not in seen:
            seen.append(text)
            print(f"warning: {text}", file=sys.stderr)
    return seen[:_MAX_WARNINGS]


def _plain(value: Any) -> Any:
    item = getattr(value, "item", None)
    return item() if callable(item) else value
