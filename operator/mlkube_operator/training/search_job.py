"""A search trial: one parameter set, scored on the training split only.

Each pod of the search's Indexed Job runs `python -m mlkube_operator.training trial`
with its JOB_COMPLETION_INDEX, computes the trial list from the spec and the seed
(`space.trials`) and runs the entry at its index. It sees only the training split
(the same split, same seed, as the refit will use), so the held-out test split stays
unseen until the refitted model is evaluated on it: choosing parameters on the test
split would make the reported metrics optimistic.

Failures are sorted by who shares them. Everything every trial would hit (the
dataset, the estimator class, a parameter the estimator does not have, a metric that
does not fit the task) exits EXIT_PERMANENT, and the Job's podFailurePolicy stops the
whole search at once (FailJob). A failure of this trial's own values (scikit-learn
rejects `max_depth: -1`, the fit raises) exits EXIT_TRIAL_FAILED: that index fails
(FailIndex) and the other trials go on.

The refit Job is the ordinary training Job (train_job) with the best parameters
merged in; before fitting it collates the trial files into the trial table
(`collect_trials`).
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlkube_operator.api.search import Direction, Search
from mlkube_operator.api.trainingrun import Metric, TrainingRunSpec

from . import space
from .artifacts import ArtifactStore, open_store
from .contract import CLASSIFICATION, Reason
from .errors import JobFailure, log
from .estimators import InvalidParameterError, build_estimator, check_task, resolve_class
from .metrics import evaluate, plan_metrics
from .pipeline import build_pipeline, model_input
from .profiling import class_labels, infer_task
from .search_contract import (
    EXIT_TRIAL_FAILED,
    SEARCH_DIR,
    TRIALS_CSV,
    TRIALS_DIR,
    TRIALS_JSON,
    TrialResult,
    search_dir,
    trial_file,
)
from .sources import parse_canonical
from .train_job import _split, read_verified

INDEX_ENV = "JOB_COMPLETION_INDEX"


class TrialFailure(JobFailure):
    """This trial's parameters failed; the search goes on without it."""

    @property
    def exit_code(self) -> int:
        return EXIT_TRIAL_FAILED


@dataclass(frozen=True)
class TrialRequest:
    spec: TrainingRunSpec
    namespace: str
    name: str
    uid: str
    generation: int
    index: int | None
    data_uri: str
    dataset_hash: str
    target: str
    artifact_root: str | Path  # a local directory or an s3://bucket/prefix
    allowed_prefixes: tuple[str, ...]
    follow_round: int = 0  # searches of this generation that followed new Dataset contents


def completion_index(given: int | None, env: dict[str, str] | os._Environ[str] = os.environ) -> int:
    """--index, else the Indexed Job's JOB_COMPLETION_INDEX."""
    if given is not None:
        return given
    raw = env.get(INDEX_ENV, "")
    try:
        return int(raw)
    except ValueError as err:
        raise JobFailure(
            Reason.INVALID_SPEC, f"no trial index: pass --index or set {INDEX_ENV} (got {raw!r})"
        ) from err


def splitter(search: Search, task: str, y: Any) -> Any:
    """The folds every trial is scored on: k-fold with cv, else one validation split.

    Stratified for classification when every class can appear in every fold; shuffled
    with the search's seed, so all trials see the same folds.
    """
    from sklearn.model_selection import KFold, ShuffleSplit, StratifiedKFold, StratifiedShuffleSplit

    smallest = int(y.value_counts().min()) if task == CLASSIFICATION else 0
    if search.cv is not None:
        if task == CLASSIFICATION and smallest >= search.cv:
            return StratifiedKFold(n_splits=search.cv, shuffle=True, random_state=search.seed)
        return KFold(n_splits=search.cv, shuffle=True, random_state=search.seed)
    fraction = search.validation_fraction
    if task == CLASSIFICATION and smallest >= 2:
        return StratifiedShuffleSplit(n_splits=1, test_size=fraction, random_state=search.seed)
    return ShuffleSplit(n_splits=1, test_size=fraction, random_state=search.seed)


@dataclass
class Prepared:
    """What every trial shares: the training split, the base estimator, the folds."""

    x_train: Any
    y_train: Any
    features: list[str]
    task: str
    estimator: Any
    folds: Any
    frame: Any


def prepare(req: TrialRequest, search: Search) -> Prepared:
    """Load and check everything the trials share; a failure here fails the whole search."""
    spec = req.spec
    cls = resolve_class(spec.estimator.class_name, req.allowed_prefixes)
    store = open_store(str(req.artifact_root))
    frame = parse_canonical(read_verified(req.data_uri, req.dataset_hash, store))
    if req.target not in frame.columns:
        raise JobFailure(Reason.INVALID_SPEC, f"--target: column {req.target!r} is not in the dataset")
    features = [str(c) for c in frame.columns if c != req.target]
    task = infer_task(frame[req.target])
    plan_metrics(task, [search.metric], None)
    estimator = build_estimator(cls, spec.estimator.params, spec.split.seed)
    check_task(estimator, spec.estimator.class_name, task)
    known = set(estimator.get_params(deep=True))
    unknown = sorted(set(search.space) - known)
    if unknown:
        listed = ", ".join(sorted(estimator.get_params(deep=False)))
        raise JobFailure(
            Reason.INVALID_SPEC,
            "; ".join(
                f"spec.search.space.{name}: {cls.__name__} has no parameter {name!r}" for name in unknown
            )
            + f" (its parameters: {listed})",
        )
    frame = frame.loc[frame[req.target].notna()]
    y = class_labels(frame[req.target]) if task == CLASSIFICATION else frame[req.target].astype("float64")
    x = model_input(frame, features)
    x_train, _x_test, y_train, _y_test, _ = _split(x, y, task, spec, [])
    return Prepared(x_train, y_train, features, task, estimator, splitter(search, task, y_train), x)


def score_trial(prep: Prepared, params: dict[str, Any], metric: Metric) -> tuple[float, list[float]]:
    """Mean validation score over the folds of the pipeline with `params` (TrialFailure if they fail)."""
    from sklearn.base import clone

    estimator = clone(prep.estimator)
    try:
        estimator.set_params(**params)
        estimator._validate_params()
    except InvalidParameterError as err:  # scikit-learn's message names the parameter and the class
        raise TrialFailure(Reason.INVALID_PARAMETERS, str(err)) from err
    except (TypeError, ValueError) as err:
        raise TrialFailure(Reason.INVALID_PARAMETERS, f"{type(estimator).__name__}: {err}") from err
    scores: list[float] = []
    for train_idx, val_idx in prep.folds.split(prep.x_train, prep.y_train):
        model = build_pipeline(prep.frame, prep.features, clone(estimator))
        x_fit, y_fit = prep.x_train.iloc[train_idx], prep.y_train.iloc[train_idx]
        x_val, y_val = prep.x_train.iloc[val_idx], prep.y_train.iloc[val_idx]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                model.fit(x_fit, y_fit)
            except InvalidParameterError as err:
                raise TrialFailure(Reason.INVALID_PARAMETERS, str(err)) from err
            except (ValueError, TypeError, ArithmeticError) as err:
                raise TrialFailure(Reason.TRIAL_FAILED, f"fit failed: {type(err).__name__}: {err}") from err
        values, skipped = evaluate(model, x_val, y_val, prep.task, [metric])
        if metric.value not in values:
            why = skipped.get(metric.value, "not computed")
            raise TrialFailure(Reason.TRIAL_FAILED, f"{metric.value} cannot be computed on a fold: {why}")
        scores.append(values[metric.value])
    import numpy as np

    return float(np.mean(scores)), scores


def run_trial(req: TrialRequest) -> dict[str, Any]:
    """Run the trial at the request's index; the result is a TrialResult (ok or a trial failure)."""
    search = req.spec.search
    if search is None:
        raise JobFailure(Reason.INVALID_SPEC, "spec.search: is required for a trial")
    index = completion_index(req.index)
    every = space.trials(search)
    if not 0 <= index < len(every):
        raise JobFailure(Reason.INVALID_SPEC, f"trial index {index} is out of range: {len(every)} trials")
    params = every[index]
    store = open_store(str(req.artifact_root))
    where = str(trial_file(req.namespace, req.name, req.uid, req.generation, index, req.follow_round))
    metric = search.metric
    try:
        prep = prepare(req, search)
    except JobFailure as failure:
        failure.details.update(index=index, params=params)
        raise
    log(f"trial {index}/{len(every)}: {params} on {len(prep.x_train)} training rows")
    started = time.perf_counter()
    try:
        score, folds = score_trial(prep, params, metric)
    except TrialFailure as failure:
        result = TrialResult(
            ok=False, index=index, params=params, metric=metric.value, reason=str(failure.reason),
            message=failure.message, fit_seconds=round(time.perf_counter() - started, 3),
        )  # fmt: skip
        _write(store, where, result)
        failure.details.update(_message_fields(result))
        raise
    seconds = time.perf_counter() - started
    log(f"trial {index}: {metric.value} {score:.6g} (folds {folds}) in {seconds:.3f} s")
    result = TrialResult(
        ok=True, index=index, params=params, metric=metric.value, score=score, fold_scores=folds,
        fit_seconds=round(seconds, 3),
    )  # fmt: skip
    _write(store, where, result)
    return _message_fields(result)


def _message_fields(result: TrialResult) -> dict[str, Any]:
    """The termination message as a dict: the TrialResult's bounded encoding."""
    data: dict[str, Any] = json.loads(result.encode())
    return data


def _write(store: ArtifactStore, relative: str, result: TrialResult) -> None:
    text = result.model_dump_json(by_alias=True, exclude_none=True) + "\n"
    store.write(relative, text.encode("utf-8"))


def collect_trials(store: ArtifactStore, directory: str, search: Search) -> tuple[str, str]:
    """Collate `trials/<i>.json` into trials.json and trials.csv, best first (the trial table).

    An index without a file is listed as failed with reason `NoResult` (its pod
    crashed before writing one, or never ran).
    """
    trials_dir = f"{directory}/{TRIALS_DIR}"
    n = search.resolved_trials()
    rows: list[TrialResult] = []
    for index in range(n):
        path = f"{trials_dir}/{index}.json"
        try:
            rows.append(TrialResult.model_validate_json(store.read(path)))
        except (OSError, ValueError):
            rows.append(
                TrialResult(ok=False, index=index, reason="NoResult", message=f"no readable {index}.json")
            )
    sign = -1.0 if search.resolved_direction() is Direction.MAXIMIZE else 1.0
    scored = sorted(
        (r for r in rows if r.ok and r.score is not None and math.isfinite(r.score)),
        key=lambda r: (sign * (r.score or 0.0), r.index),
    )
    rank = {r.index: i + 1 for i, r in enumerate(scored)}
    ordered = scored + [r for r in rows if r.index not in rank]
    table = [
        {"rank": rank.get(r.index), **r.model_dump(mode="json", by_alias=True, exclude_none=True)}
        for r in ordered
    ]
    body = {
        "metric": search.metric.value,
        "direction": search.resolved_direction().value,
        "type": search.type.value,
        "seed": search.seed,
        "cv": search.cv,
        "trials": table,
    }
    json_path = store.write(f"{directory}/{TRIALS_JSON}", (json.dumps(body, indent=1) + "\n").encode("utf-8"))
    names = sorted(search.space)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["rank", "index", "ok", "score", *names, "fit_seconds", "reason", "message"])
    for r in ordered:
        writer.writerow(
            [rank.get(r.index, ""), r.index, r.ok, "" if r.score is None else repr(r.score)]
            + [json.dumps(r.params[n]) if n in r.params else "" for n in names]
            + [r.fit_seconds if r.fit_seconds is not None else "", r.reason or "", r.message or ""]
        )
    csv_path = store.write(f"{directory}/{TRIALS_CSV}", buffer.getvalue().encode("utf-8"))
    log(f"search: {len(scored)} of {n} trials scored; table in {json_path}")
    return json_path, csv_path


def refit_search_dir(namespace: str, name: str, uid: str, generation: int, follow_round: int = 0) -> str:
    """The search's directory, relative to the artifact store's root."""
    return str(search_dir(namespace, name, uid, generation, follow_round))


__all__ = ["SEARCH_DIR", "TrialFailure", "TrialRequest", "collect_trials", "run_trial", "splitter"]
