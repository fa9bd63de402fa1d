"""Children converge: server-side apply through `Kube.apply` against the real API server.

What the operator does on every reconcile, done here directly so each property is
seen on its own: the builders' objects pass strict field validation; a field removed
from the desired object disappears from the live one; a hand edit of a managed field
is put back by the next apply (while fields only others set are left alone); applying
the same object again writes nothing; a misspelled field is an error that names it;
and a Job's template cannot be changed, which is why a Job is applied only when missing.

Children here are owned by a ConfigMap of the test (a real owner, so the garbage
collector leaves them alone), Jobs are suspended and Deployments have no replicas:
nothing runs, the API objects are what is tested.
"""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import kubernetes
import pytest

from mlkube_operator import constants as C
from mlkube_operator.adapters.kube import Kube
from mlkube_operator.api.dataset import DatasetSpec, DatasetStatus
from mlkube_operator.api.modeldeployment import ModelDeploymentSpec, ServedModel
from mlkube_operator.api.trainingrun import TrainingRunSpec
from mlkube_operator.errors import ApiError, Call, immutable_field_changed
from mlkube_operator.reconcile.dataset import build_profile_job
from mlkube_operator.reconcile.modeldeployment import CANARY, build_predictor, build_service
from mlkube_operator.reconcile.monitoring import build_retrain_run
from mlkube_operator.reconcile.search import build_search_job
from mlkube_operator.reconcile.storage import build_artifact_pvc
from mlkube_operator.reconcile.trainingrun import build_training_job
from mlkube_operator.settings import Settings

pytestmark = pytest.mark.cluster

JSON = dict[str, Any]
SETTINGS = Settings()


def _obj(kind: str, namespace: str, name: str, spec: JSON) -> JSON:
    meta = {
        "name": name,
        "namespace": namespace,
        "uid": "00000000-0000-0000-0000-000000000001",
        "generation": 1,
    }
    return {"apiVersion": C.API_VERSION, "kind": kind, "metadata": meta, "spec": spec}


def built_children(namespace: str) -> dict[str, JSON]:
    dataset = _obj("Dataset", namespace, "iris", {"source": {"builtin": "iris"}, "target": "target"})
    run_spec = {
        "datasetRef": {"name": "iris"},
        "estimator": {"className": "sklearn.linear_model.LogisticRegression"},
        "resources": {"requests": {"cpu": "500m"}, "limits": {"memory": "1Gi"}},
    }
    run = _obj("TrainingRun", namespace, "iris-lr", run_spec)
    md_spec = {
        "model": {"trainingRunRef": {"name": "iris-lr"}},
        "onDegradation": {
            "action": "Retrain",
            "retrainTemplate": {
                "datasetRef": {"name": "iris"},
                "estimator": {"className": "sklearn.svm.SVC"},
            },
        },
    }
    md = _obj("ModelDeployment", namespace, "iris", md_spec)
    spec = ModelDeploymentSpec.model_validate(md_spec)
    ds_status = DatasetStatus.model_validate({"contentHash": "c" * 64, "target": "target"})
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
        "artifact pvc": build_artifact_pvc(namespace, SETTINGS),
        "retrain run": build_retrain_run(md, spec, 1),
    }


@pytest.fixture
def kube(dev_cluster: Any) -> Kube:
    return Kube(dev_cluster.api_client)


@pytest.fixture
def owned(dev_cluster: Any, namespace: str) -> Any:
    """A function that makes a desired object owned by this test's ConfigMap."""
    core = kubernetes.client.CoreV1Api(dev_cluster.api_client)
    cm = json.loads(
        core.create_namespaced_config_map(
            namespace, {"metadata": {"name": "owner"}}, _preload_content=False
        ).data
    )
    ref = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": cm["metadata"]["uid"],
        "controller": True,
    }

    def own(body: JSON) -> JSON:
        out = copy.deepcopy(body)
        out["metadata"]["ownerReferences"] = [ref]
        if out["kind"] == "Job":
            out["spec"]["suspend"] = True
        if out["kind"] == "Deployment":
            out["spec"]["replicas"] = 0
        return out

    return own


def merge_patch(api: kubernetes.client.ApiClient, body: JSON, patch: JSON, manager: str) -> None:
    """A hand edit (as `kubectl edit` or `kubectl patch` would make it), under another field manager."""
    meta = body["metadata"]
    if body["kind"] == "Service":
        kubernetes.client.CoreV1Api(api).patch_namespaced_service(
            meta["name"],
            meta["namespace"],
            patch,
            field_manager=manager,
            _content_type="application/merge-patch+json",
        )
    else:
        kubernetes.client.AppsV1Api(api).patch_namespaced_deployment(
            meta["name"],
            meta["namespace"],
            patch,
            field_manager=manager,
            _content_type="application/merge-patch+json",
        )


def err_call(body: JSON) -> Call:
    return Call("get", "services", body["metadata"]["namespace"], body["metadata"]["name"])


def test_every_child_passes_strict_server_validation(kube: Kube, namespace: str) -> None:
    """Dry-run apply with fieldValidation=Strict: the API server's own schema accepts each one."""
    for what, body in built_children(namespace).items():
        live = kube.apply(body, dry_run=True)
        assert live["kind"] == body["kind"] and live["metadata"]["name"] == body["metadata"]["name"], what
    jobs = json.loads(kube.batch.list_namespaced_job(namespace, _preload_content=False).data)["items"]
    assert jobs == [], "a dry run creates nothing"


def test_removed_field_disappears_and_others_fields_stay(
    kube: Kube, namespace: str, owned: Any, dev_cluster: Any
) -> None:
    desired = owned(built_children(namespace)["predictor"])
    extra = copy.deepcopy(desired)
    extra["metadata"]["labels"]["team"] = "a"
    extra["spec"]["template"]["spec"]["containers"][0]["env"].append({"name": "DEBUG", "value": "1"})
    extra["spec"]["minReadySeconds"] = 5
    kube.apply(extra)
    # Someone else (a policy agent, a human) adds a label the operator does not set.
    merge_patch(
        dev_cluster.api_client, desired, {"metadata": {"labels": {"cost-center": "42"}}}, "someone-else"
    )

    live = kube.apply(desired)
    container = live["spec"]["template"]["spec"]["containers"][0]
    assert "team" not in live["metadata"]["labels"]
    assert [e["name"] for e in container["env"]] == [
        e["name"] for e in desired["spec"]["template"]["spec"]["containers"][0]["env"]
    ]
    assert (
        "minReadySeconds" not in live["spec"] or live["spec"]["minReadySeconds"] == 0
    )  # back to the default
    assert live["metadata"]["labels"]["cost-center"] == "42", "a field the operator does not manage is kept"


def test_hand_edit_of_a_managed_field_is_put_back(
    kube: Kube, namespace: str, owned: Any, dev_cluster: Any
) -> None:
    children = built_children(namespace)
    service, predictor = owned(children["service"]), owned(children["predictor"])
    kube.apply(service)
    kube.apply(predictor)
    merge_patch(
        dev_cluster.api_client,
        service,
        {
            "metadata": {"labels": {C.LABEL_COMPONENT: "hacked"}},
            "spec": {"ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": 9}]},
        },
        "kubectl-edit",
    )
    edited_service = kube._call(err_call(service), kube.core.read_namespaced_service, "iris", namespace)
    assert edited_service is not None and edited_service["spec"]["ports"][0]["targetPort"] == 9
    container = copy.deepcopy(predictor["spec"]["template"]["spec"]["containers"][0])
    container["args"] = ["--model-sha256", "b" * 64]
    merge_patch(
        dev_cluster.api_client,
        predictor,
        {"spec": {"template": {"spec": {"containers": [container]}}}},
        "kubectl-edit",
    )
    edited = kube.get_deployment(namespace, predictor["metadata"]["name"])
    assert (
        edited is not None
        and edited["spec"]["template"]["spec"]["containers"][0]["args"] == container["args"]
    )

    live_service = kube.apply(service)
    live_predictor = kube.apply(predictor)
    assert [(p["port"], p["targetPort"]) for p in live_service["spec"]["ports"]] == [
        (80, C.SERVING_PORT_NAME)
    ]
    assert live_service["metadata"]["labels"][C.LABEL_COMPONENT] == C.COMPONENT_PREDICTOR
    assert (
        live_predictor["spec"]["template"]["spec"]["containers"][0]["args"]
        == predictor["spec"]["template"]["spec"]["containers"][0]["args"]
    )
    managers = {m["manager"] for m in live_predictor["metadata"]["managedFields"]}
    assert C.FIELD_MANAGER in managers


def _our_entry(live: JSON) -> JSON:
    (entry,) = [m for m in live["metadata"]["managedFields"] if m["manager"] == C.FIELD_MANAGER]
    return dict(entry)


def test_applying_the_same_object_again_writes_nothing(kube: Kube, namespace: str, owned: Any) -> None:
    """Our managedFields entry keeps its time (seconds) and the generation stays: nothing was written.

    (Controllers write status meanwhile, e.g. the PVC's binding, so resourceVersion is
    compared only for the Service, which no controller writes.)
    """
    children = built_children(namespace)
    bodies = {what: owned(children[what]) for what in ("profile job", "predictor", "service", "artifact pvc")}
    first = {what: kube.apply(body) for what, body in bodies.items()}
    time.sleep(1.5)
    for what, body in bodies.items():
        again = kube.apply(body)
        assert _our_entry(again)["time"] == _our_entry(first[what])["time"], what
        assert again["metadata"].get("generation") == first[what]["metadata"].get("generation"), what
    service = kube.apply(bodies["service"])
    assert service["metadata"]["resourceVersion"] == first["service"]["metadata"]["resourceVersion"]
    # The same check can fail: a real change moves the entry's time.
    changed = copy.deepcopy(bodies["service"])
    changed["metadata"]["labels"]["extra"] = "1"
    assert _our_entry(kube.apply(changed))["time"] != _our_entry(first["service"])["time"]


def test_a_jobs_template_cannot_change_so_jobs_are_applied_only_when_missing(
    kube: Kube, namespace: str, owned: Any
) -> None:
    job = owned(built_children(namespace)["profile job"])
    kube.apply(job)
    changed = copy.deepcopy(job)
    changed["spec"]["template"]["spec"]["containers"][0]["args"].append("--verbose")
    with pytest.raises(ApiError) as caught:
        kube.apply(changed)
    err = caught.value
    assert (err.status, err.reason) == (422, C.REASON_REJECTED)
    assert f"apply jobs.batch {namespace}/{job['metadata']['name']}" in err.message
    assert "field is immutable" in err.message
    assert immutable_field_changed(err), "the handler treats this answer as a concurrent create"


def test_a_misspelled_field_is_an_error_naming_it(kube: Kube, namespace: str, owned: Any) -> None:
    service = owned(built_children(namespace)["service"])
    service["spec"]["ports"][0]["prot"] = 80
    with pytest.raises(ApiError) as caught:
        kube.apply(service)
    err = caught.value
    # 500, not 400, for a field the schema lacks: kubernetes/kubernetes#139253; classified as Rejected.
    assert err.reason == C.REASON_REJECTED and err.status in (400, 422, 500), err
    assert "prot" in err.message and f"apply services {namespace}/iris" in err.message
    assert kube._call(err.call, kube.core.read_namespaced_service, "iris", namespace) is None, (
        "nothing was created"
    )
