"""Hyperparameter search end to end on the dev cluster: the example, one trial failing alone.

The example search (examples/search/) is applied with one deliberately invalid value
in its grid: the real Job controller runs the Indexed Job, the failing index is
failed by the podFailurePolicy (FailIndex) while the others complete, the operator
reads every trial's termination message, refits the best parameters in an ordinary
training Job and records the summary; the trial table and the model are read back
from the artifact volume.
"""

from __future__ import annotations

import csv
import hashlib
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from mlkube_operator import constants as C

from .helpers import artifact_host_path, condition, event_reasons, jobs_of, kubectl, wait_condition

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]


def apply(kubeconfig: str, namespace: str, *docs: dict[str, Any]) -> None:
    kubectl(kubeconfig, "-n", namespace, "apply", "-f", "-", stdin=yaml.safe_dump_all(docs))


def test_search_example_with_a_failing_trial(dev_cluster: Any, namespace: str, mlkube_operator: Any) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    kubectl(kc, "-n", namespace, "apply", "-f", str(ROOT / "examples" / "iris" / "dataset.yaml"))
    run = yaml.safe_load((ROOT / "examples" / "search" / "trainingrun.yaml").read_text())
    # Three trials: 2 and null are fine, -1 is refused by scikit-learn (this trial only).
    run["spec"]["search"]["space"] = {
        "max_depth": {"values": [2, None, -1]},
        "min_samples_leaf": {"values": [1]},
    }
    apply(kc, namespace, run)
    name = run["metadata"]["name"]

    tr = wait_condition(api, "trainingruns", namespace, name, "Succeeded", timeout=480)
    succeeded = condition(tr, "Succeeded")
    assert succeeded is not None and (succeeded["status"], succeeded["reason"]) == ("True", "Trained"), (
        succeeded
    )
    assert "best of 3 trials" in succeeded["message"]
    search = tr["status"]["search"]
    assert (search["trials"], search["succeeded"], search["failed"]) == (3, 2, 1), search
    assert search["metric"] == "accuracy" and search["direction"] == "maximize"
    assert [f["index"] for f in search["failures"]] == [2]
    assert (
        search["failures"][0]["reason"] == "InvalidParameters"
        and "max_depth" in search["failures"][0]["message"]
    )
    best = json.loads(search["bestParams"])  # JSON text: a null survives the status patch
    assert search["bestIndex"] in (0, 1) and best == {
        "max_depth": [2, None][search["bestIndex"]],
        "min_samples_leaf": 1,
    }
    assert sorted(t["index"] for t in search["top"]) == [0, 1]

    jobs = {j["metadata"]["name"]: j for j in jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}={name}")}
    assert set(jobs) == {f"{name}-search-1", f"{name}-train-1"}
    indexed = jobs[f"{name}-search-1"]
    assert indexed["spec"]["completionMode"] == "Indexed" and indexed["spec"]["completions"] == 3
    assert indexed["status"].get("failedIndexes") == "2"
    assert indexed["status"].get("completedIndexes") in ("0,1", "0-1")
    refit_args = jobs[f"{name}-train-1"]["spec"]["template"]["spec"]["containers"][0]["args"]
    refit_spec = json.loads(refit_args[refit_args.index("--spec-json") + 1])
    assert refit_spec["estimator"]["params"]["max_depth"] == best["max_depth"]

    model = tr["status"]["model"]
    model_file = artifact_host_path(api, namespace, model["uri"], C.ARTIFACT_MOUNT)
    assert hashlib.sha256(model_file.read_bytes()).hexdigest() == model["sha256"]
    metadata = json.loads(
        artifact_host_path(api, namespace, model["metadataUri"], C.ARTIFACT_MOUNT).read_text()
    )
    assert metadata["params"]["max_depth"] == best["max_depth"]
    assert metadata["params"]["n_estimators"] == 30  # estimator.params still apply
    assert tr["status"]["metrics"]["accuracy"] >= 0.9

    table = json.loads(artifact_host_path(api, namespace, search["trialsUri"], C.ARTIFACT_MOUNT).read_text())
    assert table["trials"][0]["index"] == search["bestIndex"]
    assert [t["rank"] for t in table["trials"]] == [1, 2, None]
    assert table["trials"][0]["score"] == search["bestScore"]
    with artifact_host_path(api, namespace, search["trialsCsvUri"], C.ARTIFACT_MOUNT).open() as fh:
        rows = list(csv.DictReader(fh))
    assert [r["reason"] for r in rows] == ["", "", "InvalidParameters"]
    assert {"Searching", "Refitting", "Trained"} <= event_reasons(kc, namespace, "TrainingRun")


def test_search_bad_input(dev_cluster: Any, namespace: str, mlkube_operator: Any) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    kubectl(kc, "-n", namespace, "apply", "-f", str(ROOT / "examples" / "iris" / "dataset.yaml"))

    def run(name: str, search: dict[str, Any]) -> dict[str, Any]:
        return {
            "apiVersion": "mlkube.io/v1alpha1",
            "kind": "TrainingRun",
            "metadata": {"name": name},
            "spec": {
                "datasetRef": {"name": "iris"},
                "estimator": {"className": "sklearn.tree.DecisionTreeClassifier"},
                "search": {"metric": "accuracy", "parallelism": 1, **search},
            },
        }

    apply(
        kc,
        namespace,
        run("unknown", {"trials": 2, "space": {"max_dept": {"type": "int", "low": 1, "high": 5}}}),
        run("toomany", {"type": "Grid", "trials": 5, "space": {"max_depth": {"values": [1, 2]}}}),
    )
    unknown = condition(
        wait_condition(api, "trainingruns", namespace, "unknown", "Succeeded", timeout=300), "Succeeded"
    )
    assert unknown is not None and (unknown["status"], unknown["reason"]) == ("False", "InvalidSpec"), unknown
    assert (
        "spec.search.space.max_dept" in unknown["message"] and "DecisionTreeClassifier" in unknown["message"]
    )
    too_many = condition(wait_condition(api, "trainingruns", namespace, "toomany", "Succeeded"), "Succeeded")
    assert too_many is not None and (too_many["status"], too_many["reason"]) == ("False", "InvalidSpec")
    assert too_many["message"].startswith("spec.search.trials:") and "2 combination" in too_many["message"]
    assert jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=toomany") == []
    assert [j["metadata"]["name"] for j in jobs_of(api, namespace, f"{C.LABEL_TRAINING_RUN}=unknown")] == [
        "unknown-search-1"
    ]
    out = kubectl(
        kc, "-n", namespace, "apply", "-f", "-", check=False,
        stdin=yaml.safe_dump(run("empty", {"space": {}})),
    )  # fmt: skip
    assert "spec.search.space" in out and "should have at least 1 properties" in out, out
