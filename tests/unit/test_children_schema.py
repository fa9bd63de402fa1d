"""Every child the planners build is a valid object of its Kubernetes kind.

The builders in `mlkube_operator.reconcile` stay free of the Kubernetes client (they
are pure), so their dicts are checked here against the client's typed models
(`kubernetes.client.V1Job` & co., generated from the API's OpenAPI schema, unknown
fields forbidden) and must survive the round trip through them unchanged; the
retrain TrainingRun is checked against mlkube's own API model and generated CRD
schema. The API server checks the same objects with strict field validation in
tests/integration/test_children_converge.py.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonschema
import kubernetes
import pydantic
import pytest

from mlkube_operator import constants as C
from mlkube_operator.api import KINDS
from mlkube_operator.api.common import Resources
from mlkube_operator.api.dataset import DatasetSpec, DatasetStatus
from mlkube_operator.api.modeldeployment import ModelDeploymentSpec, ServedModel
from mlkube_operator.api.trainingrun import TrainingRunSpec
from mlkube_operator.crdgen import build_crd
from mlkube_operator.reconcile.dataset import build_profile_job
from mlkube_operator.reconcile.modeldeployment import CANARY, build_predictor, build_service
from mlkube_operator.reconcile.monitoring import build_retrain_run
from mlkube_operator.reconcile.search import build_search_job
from mlkube_operator.reconcile.storage import build_artifact_pvc
from mlkube_operator.reconcile.trainingrun import build_training_job
from mlkube_operator.settings import Settings

JSON = dict[str, Any]
SETTINGS = Settings(artifact_storage_class="fast")
TYPED = {
    ("batch/v1", "Job"): kubernetes.client.V1Job,
    ("apps/v1", "Deployment"): kubernetes.client.V1Deployment,
    ("v1", "Service"): kubernetes.client.V1Service,
    ("v1", "PersistentVolumeClaim"): kubernetes.client.V1PersistentVolumeClaim,
}


def _owner(kind: str, name: str, spec: JSON) -> JSON:
    return {
        "apiVersion": C.API_VERSION,
        "kind": kind,
        "metadata": {"name": name, "namespace": "ns", "uid": f"uid-{name}", "generation": 3},
        "spec": spec,
    }


def built_children() -> dict[str, JSON]:
    """One of each child the operator writes, with the optional parts filled in."""
    dataset = _owner("Dataset", "iris", {"source": {"builtin": "iris"}, "target": "target"})
    run_spec = {
        "datasetRef": {"name": "iris"},
        "estimator": {"className": "sklearn.linear_model.LogisticRegression"},
        "resources": {"requests": {"cpu": "500m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
    }
    run = _owner("TrainingRun", "iris-lr", run_spec)
    ds_status = DatasetStatus.model_validate({"contentHash": "c" * 64, "target": "target"})
    md_spec = {
        "model": {"trainingRunRef": {"name": "iris-lr"}},
        "replicas": 3,
        "resources": {"requests": {"cpu": "100m"}},
        "onDegradation": {
            "action": "Retrain",
            "retrainTemplate": {
                "datasetRef": {"name": "iris"},
                "estimator": {"className": "sklearn.ensemble.RandomForestClassifier"},
            },
        },
    }
    md = _owner("ModelDeployment", "iris", md_spec)
    spec = ModelDeploymentSpec.model_validate(md_spec)
    model = ServedModel(
        training_run="iris-lr",
        uri="file:///var/lib/mlkube/artifacts/m.joblib",
        sha256="a" * 64,
        reference_profile="/var/lib/mlkube/artifacts/profile.json",
    )
    no_profile = model.model_copy(update={"reference_profile": None})
    search = TrainingRunSpec.model_validate(
        {**run_spec, "search": {"type": "Grid", "metric": "accuracy", "space": {"C": {"values": [0.1, 1.0]}}}}
    ).search
    assert search is not None
    training_job = build_training_job(
        run, TrainingRunSpec.model_validate(run_spec), "iris", ds_status, SETTINGS
    )
    return {
        "profile job": build_profile_job(dataset, DatasetSpec.model_validate(dataset["spec"]), SETTINGS),
        "training job": training_job,
        "predictor": build_predictor(md, spec, model, SETTINGS),
        "canary": build_predictor(md, spec, no_profile, SETTINGS, track=CANARY, replicas=1),
        "search job": build_search_job(training_job, "iris-lr-search-3", search, 2),
        "service": build_service(md, spec),
        "artifact pvc": build_artifact_pvc("ns", SETTINGS),
        "retrain run": build_retrain_run(md, spec, 2),
    }


def check_typed(body: JSON) -> JSON:
    """`body` through its kind's typed model and back (raises on an unknown or mistyped field)."""
    model = TYPED[(body["apiVersion"], body["kind"])]
    typed = model.model_validate(body)
    out: JSON = kubernetes.client.ApiClient().sanitize_for_serialization(typed)
    return out


def _crd_schema(kind: str) -> JSON:
    crd = build_crd(next(k for k in KINDS if k.kind == kind))
    schema: JSON = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _plain(node: Any) -> Any:
    """The CRD schema as plain JSON schema (drop Kubernetes extensions jsonschema does not know)."""
    if isinstance(node, list):
        return [_plain(n) for n in node]
    if isinstance(node, dict):
        return {k: _plain(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"}
    return node


CHILDREN = built_children()


@pytest.mark.parametrize("name", [n for n, body in CHILDREN.items() if body["apiVersion"] != C.API_VERSION])
def test_builtin_children_are_typed_objects(name: str) -> None:
    body = CHILDREN[name]
    assert check_typed(body) == body, "the typed model dropped or changed a field"


def test_retrain_run_is_a_valid_training_run() -> None:
    body = CHILDREN["retrain run"]
    kubernetes.client.V1ObjectMeta.model_validate(body["metadata"])
    TrainingRunSpec.model_validate(body["spec"])
    jsonschema.Draft4Validator(_plain(_crd_schema("TrainingRun"))).validate(
        {k: v for k, v in body.items() if k != "metadata"}
    )


@pytest.mark.parametrize(
    ("path", "value"),
    [
        (("spec", "template", "spec", "containers", 0, "imagee"), "x"),  # misspelled field
        (("spec", "backoffLimit"), "three"),  # wrong type
        (("metadata", "lables"), {"a": "b"}),
    ],
)
def test_typed_check_rejects_a_misspelled_or_mistyped_field(path: tuple[Any, ...], value: Any) -> None:
    body = copy.deepcopy(CHILDREN["training job"])
    node: Any = body
    for step in path[:-1]:
        node = node[step]
    node[path[-1]] = value
    with pytest.raises(pydantic.ValidationError, match=str(path[-1])):
        check_typed(body)


def test_resources_render_as_kubernetes_quantities() -> None:
    """The API's Resources model dumps to what V1ResourceRequirements accepts."""
    res = Resources.model_validate({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2"}})
    dumped = res.model_dump(by_alias=True, exclude_none=True)
    typed = kubernetes.client.V1ResourceRequirements.model_validate(dumped)
    assert kubernetes.client.ApiClient().sanitize_for_serialization(typed) == dumped


def test_children_carry_owner_and_labels() -> None:
    for name, body in CHILDREN.items():
        meta = body["metadata"]
        assert meta["labels"][C.LABEL_MANAGED_BY] == C.MANAGED_BY, name
        if name != "artifact pvc":  # shared by the namespace: no owner
            (owner,) = meta["ownerReferences"]
            assert owner["controller"] is True and owner["uid"].startswith("uid-"), name
