"""The search trial entrypoint, run as the Indexed Job runs it: one process per index.

The dataset is produced by the real profile command, each trial is a separate
`python -m mlkube_operator.training trial` process that finds its index in
JOB_COMPLETION_INDEX, and the refit is the ordinary `train` command, which also
collates the trial table. Trial scores are checked against scikit-learn's
GridSearchCV on the same folds.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mlkube_operator.api.trainingrun import TrainingRunSpec
from mlkube_operator.api.validation import parse_model
from mlkube_operator.training import contract
from mlkube_operator.training.cli import main
from mlkube_operator.training.search_contract import EXIT_TRIAL_FAILED, TrialResult
from mlkube_operator.training.search_job import TrialRequest, prepare

RF = "sklearn.ensemble.RandomForestClassifier"
SEARCH = {
    "type": "Grid",
    "metric": "accuracy",
    "cv": 3,
    "seed": 5,
    "space": {"max_depth": {"values": [2, 4, -1]}, "min_samples_leaf": {"values": [1, 8]}},
}


@pytest.fixture(scope="module")
def iris(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    root = tmp_path_factory.mktemp("artifacts")
    spec = {"source": {"builtin": "iris"}, "target": "target"}
    log = root / "profile-log"
    argv = ["profile", "--spec-json", json.dumps(spec), "--namespace", "ns", "--name", "iris"]
    assert main([*argv, "--artifact-root", str(root), "--termination-log", str(log)]) == 0
    return root, json.loads(log.read_text())


def spec_json(search: dict[str, Any], params: dict[str, Any] | None = None) -> str:
    estimator = {"className": RF, "params": {"n_estimators": 15, **(params or {})}}
    return json.dumps({"datasetRef": {"name": "iris"}, "estimator": estimator, "search": search})


def argv(command: str, root: Path, ds: dict[str, Any], spec: str, log: Path) -> list[str]:
    return [
        command, "--spec-json", spec, "--namespace", "ns", "--name", "run", "--uid", "u1",
        "--generation", "3", "--data-uri", ds["dataUri"], "--dataset-hash", ds["contentHash"],
        "--target", ds["target"], "--artifact-root", str(root), "--termination-log", str(log),
    ]  # fmt: skip


def in_process(
    args: list[str], index: int | None, monkeypatch: pytest.MonkeyPatch
) -> tuple[int, dict[str, Any]]:
    """The same command line through cli.main, without a process start (for the quick failures)."""
    monkeypatch.delenv("JOB_COMPLETION_INDEX", raising=False)
    if index is not None:
        monkeypatch.setenv("JOB_COMPLETION_INDEX", str(index))
    code = main(args)
    result: dict[str, Any] = json.loads(Path(args[args.index("--termination-log") + 1]).read_text())
    return code, result


def process(args: list[str], index: int | None = None) -> tuple[int, dict[str, Any]]:
    env = {k: v for k, v in os.environ.items() if k != "JOB_COMPLETION_INDEX"}
    if index is not None:
        env["JOB_COMPLETION_INDEX"] = str(index)
    done = subprocess.run(
        [sys.executable, "-m", "mlkube_operator.training", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    log = Path(args[args.index("--termination-log") + 1])
    text = log.read_text()
    assert done.stdout.strip().splitlines()[-1] == text
    assert len(text.encode()) < contract.TERMINATION_MESSAGE_MAX_BYTES
    result: dict[str, Any] = json.loads(text)
    return done.returncode, result


def test_grid_search_trials_refit_and_trial_table(iris: tuple[Path, dict[str, Any]], tmp_path: Path) -> None:
    root, ds = iris
    spec = spec_json(SEARCH)
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(2) as pool:  # two pods at a time, as with parallelism: 2
        done = list(
            pool.map(lambda i: process(argv("trial", root, ds, spec, tmp_path / f"t{i}"), i), range(6))
        )
    results: dict[int, tuple[int, TrialResult]] = {}
    for index, (code, message) in enumerate(done):
        parsed = TrialResult.decode(message)
        assert parsed is not None and parsed.index == index
        results[index] = (code, parsed)

    # ParameterGrid order: max_depth [2, 4, -1] x min_samples_leaf [1, 8], the last varying fastest.
    assert [r.params for _, r in results.values()] == [
        {"max_depth": d, "min_samples_leaf": m} for d in (2, 4, -1) for m in (1, 8)
    ]
    for index in (4, 5):  # max_depth -1 fails alone, with scikit-learn's message
        code, r = results[index]
        assert code == EXIT_TRIAL_FAILED and not r.ok and r.reason == "InvalidParameters"
        assert "max_depth" in (r.message or "")
    scored = {i: r for i, (code, r) in results.items() if code == 0}
    assert sorted(scored) == [0, 1, 2, 3] and all(
        r.ok and len(r.fold_scores or []) == 3 for r in scored.values()
    )

    # The same folds and pipeline in GridSearchCV give the same scores.
    from sklearn.model_selection import GridSearchCV

    request = TrialRequest(
        spec=parse_model(TrainingRunSpec, json.loads(spec)), namespace="ns", name="run", uid="u1",
        generation=3, index=0, data_uri=ds["dataUri"], dataset_hash=ds["contentHash"], target=ds["target"],
        artifact_root=root, allowed_prefixes=("sklearn.",),
    )  # fmt: skip
    assert request.spec.search is not None
    prep = prepare(request, request.spec.search)
    from mlkube_operator.training.pipeline import build_pipeline

    grid = GridSearchCV(
        build_pipeline(prep.frame, prep.features, prep.estimator),
        {"estimator__max_depth": [2, 4], "estimator__min_samples_leaf": [1, 8]},
        cv=prep.folds,
        scoring="accuracy",
    ).fit(prep.x_train, prep.y_train)
    assert list(grid.cv_results_["mean_test_score"]) == [scored[i].score for i in range(4)]

    best = max(scored.values(), key=lambda r: ((r.score or 0.0), -r.index))
    refit = spec_json(SEARCH, best.params)
    code, trained = process(argv("train", root, ds, refit, tmp_path / "refit"))
    assert code == 0 and trained["ok"] and trained["rows"] == {"train": 120, "test": 30}
    where = root / "models" / "ns" / "run" / "u1" / "3"
    metadata = json.loads((where / "metadata.json").read_text())
    assert {k: metadata["params"][k] for k in best.params} == best.params
    table = json.loads((where / "search" / "trials.json").read_text())
    assert table["metric"] == "accuracy" and table["direction"] == "maximize"
    assert table["trials"][0]["index"] == best.index and table["trials"][0]["rank"] == 1
    assert [t["rank"] for t in table["trials"]] == [1, 2, 3, 4, None, None]
    rows = list(csv.DictReader((where / "search" / "trials.csv").open()))
    assert [int(r["index"]) for r in rows][4:] == [4, 5]
    assert rows[4]["reason"] == "InvalidParameters" and rows[0]["max_depth"] == json.dumps(
        best.params["max_depth"]
    )


def test_unknown_parameter_fails_the_whole_search_naming_it(
    iris: tuple[Path, dict[str, Any]], tmp_path: Path
) -> None:
    root, ds = iris
    search = {**SEARCH, "space": {"max_dept": {"values": [2, 3]}, "min_samples_leaf": {"values": [1]}}}
    code, result = process(
        argv("trial", root, ds, spec_json(search), tmp_path / "t"), 1
    )  # as the pod runs it
    assert code == contract.EXIT_PERMANENT and result["reason"] == "InvalidSpec"
    assert result["message"].startswith("spec.search.space.max_dept: RandomForestClassifier has no parameter")
    assert "min_samples_leaf" not in result["message"].split("(")[0]


def test_metric_that_does_not_fit_the_task_and_a_missing_index(
    iris: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, ds = iris
    rmse = spec_json({**SEARCH, "metric": "rmse"})
    code, result = in_process(argv("trial", root, ds, rmse, tmp_path / "a"), 0, monkeypatch)
    assert code == contract.EXIT_PERMANENT and result["reason"] == "InvalidSpec"
    assert "rmse" in result["message"]
    code, result = in_process(argv("trial", root, ds, spec_json(SEARCH), tmp_path / "b"), None, monkeypatch)
    assert code == contract.EXIT_PERMANENT and "JOB_COMPLETION_INDEX" in result["message"]
    code, result = in_process(argv("trial", root, ds, spec_json(SEARCH), tmp_path / "c"), 6, monkeypatch)
    assert code == contract.EXIT_PERMANENT and "out of range" in result["message"]


def test_a_follow_round_searches_into_its_own_directory(
    iris: tuple[Path, dict[str, Any]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """datasetPolicy Follow searches again on new data: round 1's trials and trial table sit
    next to round 1's model (3-f1), never over the first search's (3)."""
    root, ds = iris
    spec = spec_json({**SEARCH, "space": {"max_depth": {"values": [2, 4]}}, "cv": None})
    for index in (0, 1):
        args = [*argv("trial", root, ds, spec, tmp_path / f"t{index}"), "--follow-round", "1"]
        code, result = in_process(args, index, monkeypatch)
        assert code == 0 and result["ok"], result
    base = root / "models" / "ns" / "run" / "u1"
    assert sorted(p.name for p in (base / "3-f1" / "search" / "trials").iterdir()) == ["0.json", "1.json"]
    code, refit = in_process(
        [*argv("train", root, ds, spec, tmp_path / "refit"), "--follow-round", "1"], None, monkeypatch
    )
    assert code == 0 and refit["ok"], refit
    assert (base / "3-f1" / "model.joblib").exists()
    table = json.loads((base / "3-f1" / "search" / "trials.json").read_text())
    rows = table["trials"] if isinstance(table, dict) else table
    assert sorted(r["params"]["max_depth"] for r in rows) == [2, 4]  # this round's trials only
