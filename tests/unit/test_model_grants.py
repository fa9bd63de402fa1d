"""Another namespace's model: every case a ModelGrant allows or refuses, planned purely.

team-b's ModelDeployment `churn` refers to TrainingRun `churn-rf` of namespace team-a.
It is served only when a ModelGrant in team-a covers (team-b, churn-rf) and the model is
in object storage; revoking the grant keeps what serves and rolls out nothing new.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, cast

import kopf
import pytest

from mlkube_operator import constants as C
from mlkube_operator.api.grant import LabelSelector, ModelGrantSpec
from mlkube_operator.api.validation import InvalidSpecError, parse_model
from mlkube_operator.handlers.serving import deployments_by_run, deployments_by_source_namespace
from mlkube_operator.reconcile.grants import (
    check_permission,
    check_reachable,
    plan_grant_status,
    selector_matches,
    summarize,
)
from mlkube_operator.reconcile.modeldeployment import (
    TEMPLATE_HASH,
    Observed,
    ServingPlan,
    plan_model_deployment,
)
from mlkube_operator.settings import Settings

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
A, B = "a" * 64, "b" * 64
S3 = Settings(
    artifact_store="s3://models-bucket/mlkube",
    artifact_endpoint="http://10.0.0.1:8333",
    artifact_credentials_secret="mlkube-s3",
)
STORE = "s3://models-bucket/mlkube"


def md(
    *,
    namespace: str | None = "team-a",
    status: dict[str, Any] | None = None,
    strategy: str = "Rolling",
    credentials: str | None = None,
) -> dict[str, Any]:
    ref: dict[str, Any] = {"name": "churn-rf"}
    if namespace is not None:
        ref["namespace"] = namespace
    model: dict[str, Any] = {"trainingRunRef": ref}
    if credentials:
        model["credentialsSecret"] = {"name": credentials}
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn", "namespace": "team-b", "uid": "uid-md", "generation": 1},
        "spec": {
            "model": model,
            "replicas": 2,
            "strategy": {"type": strategy, "steps": [{"weight": 50}]},
        },
        "status": status or {},
    }


def run(sha: str = A, *, uri: str | None = None, namespace: str = "team-a") -> dict[str, Any]:
    return {
        "metadata": {"name": "churn-rf", "namespace": namespace, "generation": 1},
        "spec": {"datasetRef": {"name": "churn"}},
        "status": {
            "conditions": [
                {
                    "type": "Succeeded",
                    "status": "True",
                    "reason": "Trained",
                    "lastTransitionTime": "2026-01-01T00:00:00Z",
                }
            ],
            "model": {
                "uri": uri or f"{STORE}/models/{namespace}/churn-rf/u/1/model.joblib",
                "sha256": sha,
                "datasetHash": "d" * 64,
            },
        },
    }


def grant(name: str = "share-churn", namespace: str = "team-a", **spec: Any) -> dict[str, Any]:
    body = spec or {"from": [{"namespace": "team-b"}], "trainingRuns": ["churn-rf"]}
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "ModelGrant",
        "metadata": {"name": name, "namespace": namespace, "generation": 1},
        "spec": body,
    }


def live(desired: dict[str, Any], ready: int = 2) -> dict[str, Any]:
    return {
        "metadata": {"generation": 1, "annotations": desired["metadata"]["annotations"]},
        "status": {
            "observedGeneration": 1,
            "replicas": 2,
            "updatedReplicas": 2,
            "readyReplicas": ready,
            "availableReplicas": ready,
        },
    }


def plan(
    obj: dict[str, Any],
    training_run: dict[str, Any] | None,
    grants: tuple[dict[str, Any], ...] = (),
    *,
    stable: dict[str, Any] | None = None,
    canary: dict[str, Any] | None = None,
    labels: dict[str, str] | None = None,
    settings: Settings = S3,
    now: datetime = NOW,
) -> ServingPlan:
    seen = Observed(run=training_run, stable=stable, canary=canary, grants=grants, namespace_labels=labels)
    return plan_model_deployment(obj, seen, now, settings)


def cond(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == type_)


def serve_until_steady(
    obj: dict[str, Any], training_run: dict[str, Any], grants: tuple[dict[str, Any], ...]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Plan to a Steady state on `training_run`'s model: (the object with its status, the live stable)."""
    first = plan(obj, training_run, grants)
    assert first.deployment is not None
    stable = live(first.deployment)
    obj = {**obj, "status": first.status}
    steady = plan(obj, training_run, grants, stable=stable)
    assert steady.status["state"] == "Steady", steady.status
    return {**obj, "status": steady.status}, stable


# -- refused: no grant, the wrong grant, an unreachable artifact ------------------------------


def test_without_a_grant_nothing_is_created_and_nothing_is_revealed() -> None:
    p = plan(md(), run())
    assert p.deployment is None and p.service is None
    ready = cond(p.status, C.READY)
    assert (ready["status"], ready["reason"]) == ("False", "ReferenceNotPermitted")
    assert "no ModelGrant in namespace team-a lets namespace team-b serve it" in ready["message"]
    # Whether the TrainingRun exists, and its model, stay the other namespace's business.
    assert A[:12] not in ready["message"] and plan(md(), None).status["conditions"] == p.status["conditions"]
    assert p.status["reference"]["permitted"] is False and p.status["reference"]["grant"] is None
    assert p.status["reference"]["trainingRun"] == "team-a/churn-rf"
    assert [(e.type, e.reason) for e in p.events] == [("Warning", "ReferenceNotPermitted")]


@pytest.mark.parametrize(
    "spec",
    [
        {"from": [{"namespace": "team-c"}], "trainingRuns": ["churn-rf"]},  # another consumer
        {"from": [{"namespace": "team-b"}], "trainingRuns": ["churn-gbm"]},  # another run
        {"from": [{"namespaceSelector": {"matchLabels": {"team": "analytics"}}}], "allTrainingRuns": True},
    ],
    ids=["other-namespace", "other-run", "selector-not-matching"],
)
def test_a_grant_that_does_not_cover_the_reference_refuses_it(spec: dict[str, Any]) -> None:
    p = plan(md(), run(), (grant(**spec),), labels={"team": "sales"})
    assert p.deployment is None
    assert cond(p.status, C.READY)["reason"] == "ReferenceNotPermitted"


def test_a_grant_in_another_namespace_grants_nothing() -> None:
    p = plan(md(), run(), (grant(namespace="team-b"),))
    assert cond(p.status, C.READY)["reason"] == "ReferenceNotPermitted"


def test_a_grant_being_deleted_or_invalid_grants_nothing() -> None:
    deleting = grant()
    deleting["metadata"]["deletionTimestamp"] = "2026-12-01T01:00:00Z"
    invalid = grant(name="bad", **{"from": [{"namespace": "team-b"}], "trainingRuns": ["churn-rf"], "x": 1})
    both = grant(
        name="both",
        **{"from": [{"namespace": "team-b"}], "trainingRuns": ["churn-rf"], "allTrainingRuns": True},
    )
    p = plan(md(), run(), (deleting, invalid, both))
    assert cond(p.status, C.READY)["reason"] == "ReferenceNotPermitted"


def test_a_model_on_the_owners_volume_is_not_reachable() -> None:
    on_pvc = run(uri=f"file://{C.ARTIFACT_MOUNT}/models/team-a/churn-rf/u/1/model.joblib")
    p = plan(md(), on_pvc, (grant(),), settings=Settings())
    assert p.deployment is None
    ready = cond(p.status, C.READY)
    assert (ready["status"], ready["reason"]) == ("False", "ArtifactNotReachable")
    assert "PersistentVolumeClaim" in ready["message"] and "MLKUBE_ARTIFACT_STORE=s3://" in ready["message"]
    assert p.status["reference"]["grant"] == "share-churn"  # permitted, but not reachable


# -- allowed --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "spec, labels",
    [
        ({"from": [{"namespace": "team-b"}], "trainingRuns": ["churn-rf"]}, None),
        ({"from": [{"namespace": "team-x"}, {"namespace": "team-b"}], "allTrainingRuns": True}, None),
        (
            {
                "from": [{"namespaceSelector": {"matchLabels": {"team": "analytics"}}}],
                "trainingRuns": ["churn-rf"],
            },
            {"team": "analytics"},
        ),
        (
            {
                "from": [
                    {
                        "namespaceSelector": {
                            "matchExpressions": [
                                {"key": "tier", "operator": "In", "values": ["prod", "staging"]},
                                {"key": "sandbox", "operator": "DoesNotExist"},
                            ]
                        }
                    }
                ],
                "allTrainingRuns": True,
            },
            {"tier": "prod"},
        ),
    ],
    ids=["by-name", "all-runs", "selector-labels", "selector-expressions"],
)
def test_a_covering_grant_serves_the_model_from_object_storage(
    spec: dict[str, Any], labels: dict[str, str] | None
) -> None:
    p = plan(md(credentials="team-b-s3"), run(), (grant(**spec),), labels=labels)
    dep = p.deployment
    assert dep is not None and p.service is not None
    assert dep["metadata"]["namespace"] == "team-b"
    container = dep["spec"]["template"]["spec"]["containers"][0]
    args = container["args"]
    assert args[args.index("--model-uri") + 1] == f"{STORE}/models/team-a/churn-rf/u/1/model.joblib"
    assert args[args.index("--model-sha256") + 1] == A
    # The drift reference is the owner's profile, in the same store.
    assert (
        args[args.index("--reference-profile") + 1]
        == f"{STORE}/datasets/team-a/churn/{'d' * 64}/profile.json"
    )
    # Credentials: the consumer's own Secret, by reference; no volume of another namespace.
    refs = {
        e["name"]: e["valueFrom"]["secretKeyRef"]
        for e in container["env"]
        if "valueFrom" in e and "secretKeyRef" in e["valueFrom"]
    }
    assert {r["name"] for r in refs.values()} == {"team-b-s3"}
    assert not any("persistentVolumeClaim" in v for v in dep["spec"]["template"]["spec"]["volumes"])
    assert p.status["reference"] == {
        "trainingRun": "team-a/churn-rf",
        "permitted": True,
        "reason": "ReferenceGranted",
        "message": "ModelGrant team-a/share-churn lets namespace team-b serve TrainingRun team-a/churn-rf",
        "grant": "share-churn",
        "since": "2026-12-01T02:00:00Z",
    }
    assert ("Normal", "ReferenceGranted") in [(e.type, e.reason) for e in p.events]


def test_without_a_credentials_secret_the_operators_default_name_is_used() -> None:
    p = plan(md(), run(), (grant(),))
    assert p.deployment is not None
    env = p.deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    secrets = {
        e["valueFrom"]["secretKeyRef"]["name"] for e in env if "secretKeyRef" in e.get("valueFrom", {})
    }
    assert secrets == {"mlkube-s3"}


def test_steady_on_another_namespaces_model_names_it_with_its_namespace() -> None:
    obj, _ = serve_until_steady(md(), run(), (grant(),))
    assert obj["status"]["currentModel"]["trainingRun"] == "team-a/churn-rf"
    assert cond(obj["status"], C.READY)["message"].startswith("Serving team-a/churn-rf (sha256 aaaaaaaaaaaa)")


def test_the_same_namespace_needs_no_grant_and_records_no_reference() -> None:
    same = md(namespace="team-b")
    p = plan(same, run(namespace="team-b"))
    assert p.deployment is not None and p.status["reference"] is None
    assert plan(md(namespace=None), run(namespace="team-b")).deployment is not None


# -- a grant revoked, and given again --------------------------------------------------------


def test_revoking_the_grant_keeps_the_served_model_and_rolls_out_nothing_new() -> None:
    obj, stable = serve_until_steady(md(), run(A), (grant(),))
    later = NOW + timedelta(minutes=5)
    p = plan(obj, run(B), (), stable=stable, now=later)  # grant deleted; the owner trained a new model
    assert p.deployment is not None
    assert (
        p.deployment["metadata"]["annotations"][TEMPLATE_HASH]
        == stable["metadata"]["annotations"][TEMPLATE_HASH]
    )
    args = p.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model-sha256") + 1] == A
    ready, progressing = cond(p.status, C.READY), cond(p.status, C.PROGRESSING)
    assert (ready["status"], ready["reason"]) == ("True", "Serving")
    assert (progressing["status"], progressing["reason"]) == ("False", "ReferenceNotPermitted")
    assert (
        "still serving team-a/churn-rf (sha256 aaaaaaaaaaaa), no new model is rolled out"
        in progressing["message"]
    )
    assert p.status["stateSummary"] == "Steady (ReferenceNotPermitted)"
    assert (
        p.status["reference"]["permitted"] is False
        and p.status["reference"]["since"] == "2026-12-01T02:05:00Z"
    )
    assert [(e.type, e.reason) for e in p.events] == [("Warning", "ReferenceNotPermitted")]
    # The next reconcile says nothing new.
    again = plan({**obj, "status": p.status}, run(B), (), stable=stable, now=later + timedelta(seconds=30))
    assert again.events == () and again.status["reference"]["since"] == "2026-12-01T02:05:00Z"

    # Granted again: the new model rolls out.
    regranted = plan(
        {**obj, "status": again.status}, run(B), (grant(),), stable=stable, now=later + timedelta(minutes=1)
    )
    assert regranted.deployment is not None
    args = regranted.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model-sha256") + 1] == B
    assert cond(regranted.status, C.PROGRESSING)["reason"] == "RollingOut"
    assert regranted.status["stateSummary"] == "RollingOut"
    assert ("Normal", "ReferenceGranted") in [(e.type, e.reason) for e in regranted.events]


def test_revoking_the_grant_during_a_canary_returns_to_the_served_model() -> None:
    obj, stable = serve_until_steady(md(strategy="Canary"), run(A), (grant(),))
    canary_plan = plan(obj, run(B), (grant(),), stable=stable)
    assert canary_plan.canary is not None and canary_plan.status["state"] == "Canary"
    obj = {**obj, "status": canary_plan.status}
    p = plan(obj, run(B), (), stable=stable, canary=live(canary_plan.canary, 1))
    assert p.canary is None and p.delete_canary
    assert p.deployment is not None
    args = p.deployment["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--model-sha256") + 1] == A
    assert p.status["candidateModel"] is None and p.status["canary"] is None
    assert p.status["rejectedModels"] == []  # not rejected for its quality: only not permitted


def test_a_spec_pointing_at_a_refused_run_keeps_the_local_model_serving() -> None:
    local = md(namespace="team-b")
    obj, stable = serve_until_steady(local, run(A, namespace="team-b"), ())
    moved = md()
    moved["status"] = obj["status"]
    moved["metadata"]["generation"] = 2
    p = plan(moved, run(B), (), stable=stable)
    assert p.deployment is not None
    assert p.status["currentModel"]["trainingRun"] == "churn-rf"
    assert cond(p.status, C.READY)["status"] == "True"
    assert cond(p.status, C.PROGRESSING)["reason"] == "ReferenceNotPermitted"


# -- the grant itself ------------------------------------------------------------------------


def test_selector_semantics() -> None:
    sel = LabelSelector.model_validate(
        {
            "matchLabels": {"team": "analytics"},
            "matchExpressions": [
                {"key": "tier", "operator": "NotIn", "values": ["dev"]},
                {"key": "owner", "operator": "Exists"},
            ],
        }
    )
    assert selector_matches(sel, {"team": "analytics", "owner": "x"})
    assert selector_matches(sel, {"team": "analytics", "owner": "x", "tier": "prod"})
    assert not selector_matches(sel, {"team": "analytics", "owner": "x", "tier": "dev"})
    assert not selector_matches(sel, {"team": "analytics"})
    assert not selector_matches(sel, {"team": "sales", "owner": "x"})


def test_a_selector_never_matches_unreadable_labels() -> None:
    g = grant(
        **{
            "from": [{"namespaceSelector": {"matchExpressions": [{"key": "x", "operator": "DoesNotExist"}]}}],
            "allTrainingRuns": True,
        }
    )
    assert check_permission("team-b", {}, "team-a", "churn-rf", [g]).permitted
    assert not check_permission("team-b", None, "team-a", "churn-rf", [g]).permitted


def test_the_first_grant_by_name_is_reported() -> None:
    access = check_permission("team-b", None, "team-a", "churn-rf", [grant("zeta"), grant("alpha")])
    assert access.grant == "alpha"


@pytest.mark.parametrize(
    "spec, problem",
    [
        ({"from": [{"namespace": "team-b"}]}, "exactly one of trainingRuns (non-empty) or allTrainingRuns"),
        ({"from": [], "allTrainingRuns": True}, "at least 1 item"),
        ({"from": [{}], "allTrainingRuns": True}, "exactly one of namespace or namespaceSelector"),
        (
            {"from": [{"namespaceSelector": {}}], "allTrainingRuns": True},
            "empty selector would grant every namespace",
        ),
        (
            {
                "from": [{"namespaceSelector": {"matchExpressions": [{"key": "k", "operator": "In"}]}}],
                "allTrainingRuns": True,
            },
            "values must not be empty for operator In",
        ),
    ],
)
def test_invalid_grants_name_the_problem(spec: dict[str, Any], problem: str) -> None:
    with pytest.raises(InvalidSpecError) as err:
        parse_model(ModelGrantSpec, spec)
    assert problem in err.value.message


def test_grant_status_summarises_and_accepts() -> None:
    g = grant(
        **{
            "from": [{"namespace": "team-b"}, {"namespaceSelector": {"matchLabels": {"team": "analytics"}}}],
            "trainingRuns": ["churn-rf", "churn-gbm"],
        }
    )
    status, changed = plan_grant_status(g, NOW)
    assert changed and status["summary"] == "team-b, {team=analytics} -> churn-rf, churn-gbm"
    accepted = cond(status, C.ACCEPTED)
    assert (accepted["status"], accepted["reason"]) == ("True", "GrantAccepted")
    assert plan_grant_status({**g, "status": status}, NOW + timedelta(minutes=1)) == (status, False)
    bad = grant(**{"from": [{"namespace": "team-b"}]})
    status, _ = plan_grant_status(bad, NOW)
    assert cond(status, C.ACCEPTED)["reason"] == "InvalidSpec" and status["summary"] is None
    assert summarize(
        parse_model(ModelGrantSpec, {"from": [{"namespace": "b"}], "allTrainingRuns": True})
    ) == ("b -> all TrainingRuns")


def test_reachability_is_object_storage_only() -> None:
    assert check_reachable("b", "a", "r", f"{STORE}/models/a/r/u/1/model.joblib") is None
    refused = check_reachable("b", "a", "r", "file:///artifacts/models/a/r/u/1/model.joblib")
    assert refused is not None and refused.reason == "ArtifactNotReachable"


# -- what wakes a ModelDeployment: its TrainingRun's namespace, and grants there --------------


def body(raw: dict[str, Any]) -> kopf.Body:
    return kopf.Body(cast(kopf.RawBody, raw))


def test_indexes_file_a_cross_namespace_deployment_under_the_owners_namespace() -> None:
    obj = md()
    assert set(deployments_by_run(body(obj)) or {}) == {("team-a", "churn-rf")}
    assert set(deployments_by_source_namespace(body(obj)) or {}) == {"team-a"}
    local = md(namespace=None)
    assert set(deployments_by_run(body(local)) or {}) == {("team-b", "churn-rf")}
    assert deployments_by_source_namespace(body(local)) is None
