"""A Secret a Job or predictor would read must exist before the operator creates it.

The Secrets are found in the very manifests the planners produce (a Dataset's profile Job
with s3 or sql credentials, a predictor Deployment reading a granted model from object
storage), so whatever a pod template names is checked, with the spec field it came from.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mlkube_operator import constants as C
from mlkube_operator.errors import MissingSecret, TemporaryFailure
from mlkube_operator.reconcile.dataset import plan_dataset
from mlkube_operator.reconcile.jobs import JobPhase, JobView
from mlkube_operator.reconcile.modeldeployment import Observed, creates_pods, plan_model_deployment
from mlkube_operator.reconcile.secrets import (
    DEFAULT_ARTIFACT_SECRET,
    SecretRef,
    job_fields,
    missing_secrets,
    predictor_fields,
    secret_refs,
)
from mlkube_operator.settings import Settings

NOW = datetime(2026, 12, 1, 6, 0, tzinfo=UTC)
S3 = Settings(
    artifact_store="s3://models-bucket/mlkube",
    artifact_endpoint="http://10.0.0.1:8333",
    artifact_credentials_secret="mlkube-s3",
)
AWS_KEYS = frozenset({C.SECRET_KEY_ACCESS_KEY_ID, C.SECRET_KEY_SECRET_ACCESS_KEY})


def dataset(source: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "sales", "namespace": "team-a", "uid": "u", "generation": 1},
        "spec": {"source": source, "target": "y"},
    }


def profile_job(source: dict[str, Any], settings: Settings | None = None) -> dict[str, Any]:
    job = plan_dataset(dataset(source), JobView(JobPhase.MISSING), NOW, settings or Settings()).create
    assert job is not None
    return job


S3_SOURCE = {"s3": {"uri": "s3://data/sales.csv", "format": "csv", "credentialsSecret": {"name": "data-s3"}}}
SQL_SOURCE = {"sql": {"query": "SELECT 1", "connectionSecret": {"name": "pg", "key": "url"}}}


def test_an_s3_source_needs_both_keys_of_its_credentials_secret() -> None:
    refs = secret_refs(profile_job(S3_SOURCE), job_fields())
    field = "spec.source.s3.credentialsSecret"
    assert refs == [
        SecretRef("data-s3", C.SECRET_KEY_ACCESS_KEY_ID, field),
        SecretRef("data-s3", C.SECRET_KEY_SECRET_ACCESS_KEY, field),
    ]
    problem = missing_secrets("team-a", refs, {"data-s3": None})
    assert problem is not None and problem.reason == C.REASON_SECRET_NOT_FOUND
    assert "Secret team-a/data-s3 not found (spec.source.s3.credentialsSecret)" in problem.message
    assert missing_secrets("team-a", refs, {"data-s3": AWS_KEYS}) is None


def test_a_missing_key_is_named_with_its_field() -> None:
    refs = secret_refs(profile_job(SQL_SOURCE), job_fields())
    assert refs == [SecretRef("pg", "url", "spec.source.sql.connectionSecret")]
    problem = missing_secrets("team-a", refs, {"pg": frozenset({"password"})})
    assert problem is not None and problem.reason == C.REASON_SECRET_KEY_NOT_FOUND
    assert "Secret team-a/pg has no key url (spec.source.sql.connectionSecret)" in problem.message


def test_a_job_writing_to_object_storage_needs_the_default_artifact_secret() -> None:
    refs = secret_refs(profile_job({"builtin": "iris"}, S3), job_fields())
    assert {r.name for r in refs} == {"mlkube-s3"} and {r.field for r in refs} == {DEFAULT_ARTIFACT_SECRET}
    # Only one of the two keys: SecretKeyNotFound names the missing one only.
    problem = missing_secrets("team-a", refs, {"mlkube-s3": frozenset({C.SECRET_KEY_ACCESS_KEY_ID})})
    assert problem is not None and problem.reason == C.REASON_SECRET_KEY_NOT_FOUND
    assert C.SECRET_KEY_SECRET_ACCESS_KEY in problem.message
    assert f"no key {C.SECRET_KEY_ACCESS_KEY_ID}" not in problem.message
    # On the PVC a builtin source reads no Secret at all.
    assert secret_refs(profile_job({"builtin": "iris"}), job_fields()) == []


def test_a_whole_missing_secret_outranks_a_missing_key_and_each_is_named_once() -> None:
    refs = secret_refs(profile_job(S3_SOURCE, S3), job_fields())
    problem = missing_secrets("team-a", refs, {"data-s3": None, "mlkube-s3": frozenset()})
    assert problem is not None and problem.reason == C.REASON_SECRET_NOT_FOUND
    assert problem.message.count("data-s3") == 1
    assert "Secret team-a/mlkube-s3 has no key" in problem.message


def test_optional_references_are_not_required() -> None:
    manifest = {
        "spec": {
            "template": {
                "spec": {
                    "containers": [
                        {
                            "name": "c",
                            "env": [
                                {
                                    "name": "A",
                                    "valueFrom": {
                                        "secretKeyRef": {"name": "s", "key": "k", "optional": True}
                                    },
                                }
                            ],
                            "envFrom": [{"secretRef": {"name": "whole"}}],
                        }
                    ]
                }
            }
        }
    }
    assert secret_refs(manifest, {}) == [SecretRef("whole", None, "envFrom of container c")]
    assert missing_secrets("n", secret_refs(manifest, {}), {"whole": frozenset()}) is None


def granted_md(credentials: str | None) -> dict[str, Any]:
    model: dict[str, Any] = {"trainingRunRef": {"name": "churn-rf", "namespace": "team-a"}}
    if credentials:
        model["credentialsSecret"] = {"name": credentials}
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "ModelDeployment",
        "metadata": {"name": "churn", "namespace": "team-b", "uid": "uid-md", "generation": 1},
        "spec": {"model": model, "replicas": 1},
    }


RUN = {
    "metadata": {"name": "churn-rf", "namespace": "team-a", "generation": 1},
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
            "uri": "s3://models-bucket/mlkube/models/team-a/churn-rf/u/1/model.joblib",
            "sha256": "a" * 64,
        },
    },
}
GRANT = {
    "apiVersion": "mlkube.io/v1alpha1",
    "kind": "ModelGrant",
    "metadata": {"name": "share", "namespace": "team-a", "generation": 1},
    "spec": {"from": [{"namespace": "team-b"}], "trainingRuns": ["churn-rf"]},
}


def test_a_granted_models_predictor_needs_the_consumers_credentials_secret() -> None:
    obj = granted_md("team-b-s3")
    plan = plan_model_deployment(obj, Observed(run=RUN, grants=(GRANT,)), NOW, S3)
    assert plan.deployment is not None
    refs = secret_refs(plan.deployment, predictor_fields(True))
    assert {(r.name, r.field) for r in refs} == {("team-b-s3", "spec.model.credentialsSecret")}
    problem = missing_secrets("team-b", refs, {"team-b-s3": None})
    assert problem is not None and problem.reason == C.REASON_SECRET_NOT_FOUND
    assert "Secret team-b/team-b-s3 not found (spec.model.credentialsSecret)" in problem.message
    # Without spec.model.credentialsSecret the operator's default name is the one needed.
    plan = plan_model_deployment(granted_md(None), Observed(run=RUN, grants=(GRANT,)), NOW, S3)
    assert plan.deployment is not None
    assert {r.field for r in secret_refs(plan.deployment, predictor_fields(False))} == {
        DEFAULT_ARTIFACT_SECRET
    }


def test_a_missing_secret_is_a_temporary_failure_with_its_reason() -> None:
    err = MissingSecret(C.REASON_SECRET_NOT_FOUND, "Secret n/s not found")
    assert isinstance(err, TemporaryFailure) and err.reason == "SecretNotFound"


def test_only_an_apply_that_makes_new_pods_is_checked() -> None:
    """A serving Deployment whose pods would not change is applied as usual (its status,
    verdicts and Service keep being reconciled) even if its Secret went away meanwhile."""
    plan = plan_model_deployment(granted_md("team-b-s3"), Observed(run=RUN, grants=(GRANT,)), NOW, S3)
    desired = plan.deployment
    assert desired is not None
    assert creates_pods(desired, None)
    live = {"metadata": {"annotations": dict(desired["metadata"]["annotations"])}}
    assert not creates_pods(desired, live)
    live["metadata"]["annotations"]["mlkube.io/template-hash"] = "0" * 16  # another model or replica count
    assert creates_pods(desired, live)
    assert not creates_pods(None, live)
