"""Jobs and predictors request cpu and memory even when the spec sets none.

A namespace whose ResourceQuota covers `requests.cpu`/`requests.memory` refuses a pod
without those requests; the operator's Settings supply them (docs/operator.md).
"""

from __future__ import annotations

from typing import Any

import pytest

from mlkube_operator import constants as C
from mlkube_operator.api.common import Resources
from mlkube_operator.api.dataset import DatasetSpec, DatasetStatus
from mlkube_operator.api.modeldeployment import ModelDeploymentSpec, ServedModel
from mlkube_operator.api.trainingrun import TrainingRunSpec
from mlkube_operator.reconcile.dataset import build_profile_job
from mlkube_operator.reconcile.jobs import with_default_requests
from mlkube_operator.reconcile.modeldeployment import build_predictor
from mlkube_operator.reconcile.search import build_search_job
from mlkube_operator.reconcile.trainingrun import build_training_job
from mlkube_operator.settings import Settings

JSON = dict[str, Any]


def _owner(kind: str, name: str, spec: JSON) -> JSON:
    return {
        "apiVersion": C.API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 1},
        "spec": spec,
    }


def _container(body: JSON) -> JSON:
    container: JSON = body["spec"]["template"]["spec"]["containers"][0]
    return container


def profile_job(settings: Settings) -> JSON:
    dataset = _owner("Dataset", "iris", {"source": {"builtin": "iris"}, "target": "target"})
    return build_profile_job(dataset, DatasetSpec.model_validate(dataset["spec"]), settings)


def training_job(settings: Settings, resources: JSON | None = None) -> JSON:
    spec: JSON = {
        "datasetRef": {"name": "iris"},
        "estimator": {"className": "sklearn.tree.DecisionTreeClassifier"},
    }
    if resources is not None:
        spec["resources"] = resources
    run = _owner("TrainingRun", "iris-dt", spec)
    status = DatasetStatus.model_validate({"contentHash": "c" * 64, "target": "target"})
    return build_training_job(run, TrainingRunSpec.model_validate(spec), "iris", status, settings)


def predictor(settings: Settings, resources: JSON | None = None) -> JSON:
    spec: JSON = {"model": {"trainingRunRef": {"name": "iris-dt"}}}
    if resources is not None:
        spec["resources"] = resources
    md = _owner("ModelDeployment", "iris", spec)
    model = ServedModel(
        training_run="iris-dt", uri="file:///var/lib/mlkube/artifacts/m.joblib", sha256="a" * 64
    )
    return build_predictor(md, ModelDeploymentSpec.model_validate(spec), model, settings)


def test_profile_and_training_jobs_request_the_job_defaults() -> None:
    settings = Settings()
    for job in (profile_job(settings), training_job(settings)):
        assert _container(job)["resources"] == {
            "requests": {"cpu": settings.job_cpu_request, "memory": settings.job_memory_request}
        }
    assert (settings.job_cpu_request, settings.job_memory_request) == ("100m", "256Mi")


def test_search_job_keeps_the_training_jobs_requests() -> None:
    settings = Settings(job_cpu_request="300m")
    spec = TrainingRunSpec.model_validate(
        {
            "datasetRef": {"name": "iris"},
            "estimator": {"className": "sklearn.tree.DecisionTreeClassifier"},
            "search": {"type": "Grid", "metric": "accuracy", "space": {"max_depth": {"values": [2, 3]}}},
        }
    )
    assert spec.search is not None
    search = build_search_job(training_job(settings), "iris-dt-search-1", spec.search, 2)
    assert _container(search)["resources"]["requests"] == {"cpu": "300m", "memory": "256Mi"}


def test_predictors_request_the_predictor_defaults() -> None:
    settings = Settings(predictor_cpu_request="75m", predictor_memory_request="96Mi")
    assert _container(predictor(settings))["resources"] == {"requests": {"cpu": "75m", "memory": "96Mi"}}
    assert (Settings().predictor_cpu_request, Settings().predictor_memory_request) == ("50m", "128Mi")


def test_the_specs_requests_win_and_only_missing_ones_are_filled() -> None:
    settings = Settings()
    job = training_job(settings, {"requests": {"cpu": "2"}})
    assert _container(job)["resources"] == {"requests": {"cpu": "2", "memory": "256Mi"}}
    served = predictor(settings, {"requests": {"memory": "1Gi"}, "limits": {"memory": "2Gi"}})
    assert _container(served)["resources"] == {
        "requests": {"memory": "1Gi", "cpu": "50m"},
        "limits": {"memory": "2Gi"},
    }


def test_a_limit_without_a_request_gets_no_default_request() -> None:
    """Kubernetes requests the limit then; a default above a small limit would be refused."""
    out = with_default_requests(
        Resources.model_validate({"limits": {"cpu": "50m"}}), cpu="100m", memory="256Mi"
    )
    assert out == {"limits": {"cpu": "50m"}, "requests": {"memory": "256Mi"}}


def test_empty_defaults_add_nothing() -> None:
    settings = Settings(
        job_cpu_request="", job_memory_request="", predictor_cpu_request="", predictor_memory_request=""
    )
    assert "resources" not in _container(profile_job(settings))
    assert "resources" not in _container(predictor(settings))
    assert _container(training_job(settings, {"limits": {"cpu": "1"}}))["resources"] == {
        "limits": {"cpu": "1"}
    }


def test_defaults_come_from_the_environment_and_bad_quantities_fail_at_start() -> None:
    settings = Settings.from_env({"MLKUBE_JOB_MEMORY_REQUEST": "1Gi", "MLKUBE_PREDICTOR_CPU_REQUEST": ""})
    assert settings.job_memory_request == "1Gi"
    assert settings.predictor_cpu_request == ""
    with pytest.raises(SystemExit, match="MLKUBE_JOB_CPU_REQUEST"):
        Settings.from_env({"MLKUBE_JOB_CPU_REQUEST": "lots"})
