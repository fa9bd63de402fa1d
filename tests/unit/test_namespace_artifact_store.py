"""A namespace's own artifact store: `mlkube.io/artifact-*` annotations on the Namespace.

The operator's settings (MLKUBE_ARTIFACT_*) are the default; a Namespace's annotations
replace them for the objects in it, so one team's profile and training Jobs write to
its bucket while another's use the PVC. The in-cluster path (the operator reading the
annotations and Jobs writing to SeaweedFS) is tests/integration/test_s3_store_e2e.py.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from mlkube_operator import constants as C
from mlkube_operator.reconcile.dataset import plan_dataset
from mlkube_operator.reconcile.jobs import JobPhase, JobView, artifact_store_env
from mlkube_operator.settings import NamespaceSettingsError, Settings

NOW = datetime(2026, 12, 1, 2, 0, tzinfo=UTC)
OPERATOR_S3 = Settings(
    artifact_store="s3://shared/mlkube",
    artifact_endpoint="http://10.0.0.1:8333",
    artifact_credentials_secret="s3",
)
TEAM = {
    C.ANNOTATION_ARTIFACT_STORE: "s3://team-a-models/prod",
    C.ANNOTATION_ARTIFACT_ENDPOINT: "http://minio.storage:9000",
    C.ANNOTATION_ARTIFACT_REGION: "eu-west-1",
    C.ANNOTATION_ARTIFACT_CREDENTIALS_SECRET: "team-a-s3",
}


def test_annotations_replace_the_operators_store() -> None:
    team = Settings().for_namespace({**TEAM, "unrelated.io/x": "y"})
    assert team.object_store and team.artifact_root == "s3://team-a-models/prod"
    assert (team.artifact_endpoint, team.artifact_region, team.artifact_credentials_secret) == (
        "http://minio.storage:9000",
        "eu-west-1",
        "team-a-s3",
    )
    assert team.trainer_image == Settings().trainer_image  # everything else is the operator's


def test_unset_annotations_keep_the_operators_values() -> None:
    assert OPERATOR_S3.for_namespace({}) is OPERATOR_S3
    only_bucket = OPERATOR_S3.for_namespace({C.ANNOTATION_ARTIFACT_STORE: "s3://team-b/x"})
    assert only_bucket.artifact_root == "s3://team-b/x"
    assert (only_bucket.artifact_endpoint, only_bucket.artifact_credentials_secret) == (
        "http://10.0.0.1:8333",
        "s3",
    )


def test_pvc_keeps_a_namespace_on_its_volume_when_the_default_is_object_storage() -> None:
    local = OPERATOR_S3.for_namespace({C.ANNOTATION_ARTIFACT_STORE: "pvc"})
    assert not local.object_store and local.artifact_root == C.ARTIFACT_MOUNT


@pytest.mark.parametrize(
    ("annotations", "named"),
    [
        ({C.ANNOTATION_ARTIFACT_STORE: "gs://bucket/x"}, C.ANNOTATION_ARTIFACT_STORE),
        ({C.ANNOTATION_ARTIFACT_ENDPOINT: "minio:9000"}, C.ANNOTATION_ARTIFACT_ENDPOINT),
        ({C.ANNOTATION_ARTIFACT_REGION: "EU West"}, C.ANNOTATION_ARTIFACT_REGION),
    ],
)
def test_an_invalid_annotation_is_named(annotations: dict[str, str], named: str) -> None:
    with pytest.raises(NamespaceSettingsError, match=named):
        Settings().for_namespace(annotations)


def dataset(namespace: str) -> dict[str, Any]:
    return {
        "apiVersion": "mlkube.io/v1alpha1",
        "kind": "Dataset",
        "metadata": {"name": "churn", "namespace": namespace, "uid": "u", "generation": 1},
        "spec": {"source": {"builtin": "iris"}, "target": "species"},
        "status": {},
    }


def test_the_profile_job_of_an_annotated_namespace_writes_to_its_bucket() -> None:
    job = plan_dataset(
        dataset("team-a"), JobView(JobPhase.MISSING), NOW, Settings().for_namespace(TEAM)
    ).create
    assert job is not None
    pod = job["spec"]["template"]["spec"]
    args = pod["containers"][0]["args"]
    assert args[args.index("--artifact-root") + 1] == "s3://team-a-models/prod"
    assert not any("persistentVolumeClaim" in v for v in pod["volumes"])
    env = {e["name"]: e for e in pod["containers"][0]["env"]}
    assert env[C.ENV_ARTIFACT_ENDPOINT]["value"] == "http://minio.storage:9000"
    assert env[C.ENV_ARTIFACT_ACCESS_KEY_ID]["valueFrom"]["secretKeyRef"]["name"] == "team-a-s3"
    # The namespace next door, without annotations, keeps the operator's PVC.
    other = plan_dataset(dataset("team-b"), JobView(JobPhase.MISSING), NOW, Settings()).create
    assert other is not None
    assert any("persistentVolumeClaim" in v for v in other["spec"]["template"]["spec"]["volumes"])


def test_a_pod_on_the_pvc_that_reads_an_s3_model_gets_the_store_credentials() -> None:
    # A namespace on the PVC serving a granted model from another namespace's bucket.
    consumer = Settings().for_namespace(
        {
            C.ANNOTATION_ARTIFACT_ENDPOINT: "http://minio.storage:9000",
            C.ANNOTATION_ARTIFACT_CREDENTIALS_SECRET: "b-s3",
        }
    )
    assert not consumer.object_store
    assert artifact_store_env(consumer) == []
    env = {
        e["name"]: e for e in artifact_store_env(consumer, reads="s3://team-a-models/prod/models/m.joblib")
    }
    assert C.ENV_ARTIFACT_STORE not in env  # it writes nothing there
    assert env[C.ENV_ARTIFACT_ENDPOINT]["value"] == "http://minio.storage:9000"
    assert env[C.ENV_ARTIFACT_SECRET_ACCESS_KEY]["valueFrom"]["secretKeyRef"]["name"] == "b-s3"
