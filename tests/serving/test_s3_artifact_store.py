"""The object-store artifact store end to end, against a real S3 server (SeaweedFS).

The profile and training entrypoints run as processes (as in their Jobs) with
`--artifact-root s3://...` and the MLKUBE_ARTIFACT_* environment the operator sets
from its settings and a Secret; a real model server process then downloads the model
from the store, verifies its sha256 and serves it.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest

from servers import S3Server

from .conftest import REPO, start_server

SPEC = {
    "datasetRef": {"name": "iris"},
    "estimator": {"className": "sklearn.linear_model.LogisticRegression", "params": {"max_iter": 500}},
    "split": {"testFraction": 0.3, "seed": 1},
}


def store_env(s3: S3Server, root: str) -> dict[str, str]:
    return {
        "MLKUBE_ARTIFACT_STORE": root,
        "MLKUBE_ARTIFACT_ENDPOINT": s3.endpoint,
        "MLKUBE_ARTIFACT_REGION": s3.region,
        **s3.env("MLKUBE_ARTIFACT_"),
    }


def entrypoint(args: list[str], env: dict[str, str], tmp: Path) -> tuple[int, dict[str, Any]]:
    log = tmp / f"tl-{args[0]}"
    full = {**{k: v for k, v in os.environ.items() if not k.startswith("MLKUBE_")}, **env}
    proc = subprocess.run(
        [sys.executable, "-m", "mlkube_operator.training", *args, "--termination-log", str(log)],
        capture_output=True,
        text=True,
        timeout=180,
        env=full,
        cwd=REPO,
    )
    result: dict[str, Any] = json.loads(log.read_text())
    return proc.returncode, result


@pytest.fixture(scope="module")
def trained(s3: S3Server, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("s3-store")
    bucket = s3.make_bucket("artifacts")
    root = f"s3://{bucket}/mlkube"
    env = store_env(s3, root)
    dataset = {"source": {"builtin": "iris"}, "target": "species"}
    common = ["--namespace", "ns", "--artifact-root", root]
    code, profile = entrypoint(
        ["profile", "--spec-json", json.dumps(dataset), "--name", "iris", *common], env, tmp
    )
    assert code == 0 and profile["ok"], profile
    code, train = entrypoint(
        [
            "train",
            "--spec-json",
            json.dumps(SPEC),
            "--name",
            "iris-lr",
            "--uid",
            "u1",
            "--generation",
            "1",
            "--data-uri",
            profile["dataUri"],
            "--dataset-hash",
            profile["contentHash"],
            "--target",
            "species",
            *common,
        ],
        env,
        tmp,
    )
    assert code == 0 and train["ok"], train
    return {"root": root, "bucket": bucket, "env": env, "profile": profile, "train": train, "tmp": tmp}


def test_jobs_write_their_artifacts_to_the_store(s3: S3Server, trained: dict[str, Any]) -> None:
    root, bucket, profile = trained["root"], trained["bucket"], trained["profile"]
    content_hash = profile["contentHash"]
    assert profile["dataUri"] == f"{root}/datasets/ns/iris/{content_hash}/data.csv"
    assert profile["profileUri"] == f"{root}/datasets/ns/iris/{content_hash}/profile.json"
    data = s3.get(f"{bucket}/mlkube/datasets/ns/iris/{content_hash}/data.csv")
    assert hashlib.sha256(data).hexdigest() == content_hash
    model = trained["train"]["model"]
    assert model["uri"] == f"{root}/models/ns/iris-lr/u1/1/model.joblib"
    assert model["metadataUri"] == f"{root}/models/ns/iris-lr/u1/1/metadata.json"
    body = s3.get(f"{bucket}/mlkube/models/ns/iris-lr/u1/1/model.joblib")
    assert hashlib.sha256(body).hexdigest() == model["sha256"] and len(body) == model["sizeBytes"]


def test_model_server_loads_and_verifies_the_model_from_the_store(
    s3: S3Server, trained: dict[str, Any]
) -> None:
    model, profile, env, tmp = trained["train"]["model"], trained["profile"], trained["env"], trained["tmp"]
    server = start_server(
        "s3iris",
        None,
        tmp,
        "--model-uri",
        model["uri"],
        "--model-sha256",
        model["sha256"],
        "--reference-profile",
        profile["profileUri"],
        env=env,
    )
    try:
        server.wait_ready(90)
        assert httpx.get(f"{server.url}/v2/models/s3iris", timeout=5).status_code == 200
        # metadata.json came from beside the model in the store (else the server says so).
        assert "no metadata.json" not in server.logs()
        r = httpx.post(
            f"{server.url}/v1/models/s3iris:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]}, timeout=10
        )
        assert r.status_code == 200 and r.json()["predictions"] == [0], r.text
        metrics = httpx.get(f"{server.url}/metrics", timeout=5).text
        assert model["sha256"] in metrics
    finally:
        server.stop()


def test_model_server_refuses_a_model_whose_digest_differs(s3: S3Server, trained: dict[str, Any]) -> None:
    model, env, tmp = trained["train"]["model"], trained["env"], trained["tmp"]
    server = start_server(
        "s3bad", None, tmp, "--model-uri", model["uri"], "--model-sha256", "0" * 64, env=env
    )
    try:
        server.wait_live(60)
        ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5)
        for _ in range(300):
            if ready.json().get("reason") != "Loading":
                break
            ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5)
        assert ready.status_code == 503 and ready.json()["reason"] == "DigestMismatch", ready.text
        assert env["MLKUBE_ARTIFACT_AWS_SECRET_ACCESS_KEY"] not in server.logs()
    finally:
        server.stop()


def test_missing_model_and_wrong_credentials_are_named(s3: S3Server, trained: dict[str, Any]) -> None:
    model, env, tmp = trained["train"]["model"], trained["env"], trained["tmp"]
    missing = model["uri"].replace("/1/model.joblib", "/9/model.joblib")
    absent = start_server(
        "s3missing", None, tmp, "--model-uri", missing, "--model-sha256", model["sha256"], env=env
    )
    wrong = {**env, "MLKUBE_ARTIFACT_AWS_SECRET_ACCESS_KEY": "NotTheSecretKey0123456789"}
    denied = start_server(
        "s3denied", None, tmp, "--model-uri", model["uri"], "--model-sha256", model["sha256"], env=wrong
    )
    try:
        for server, reason in ((absent, "ModelNotFound"), (denied, "ModelUnreadable")):
            server.wait_live(60)
            ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5)
            for _ in range(300):
                if ready.json().get("reason") != "Loading":
                    break
                ready = httpx.get(f"{server.url}/v2/health/ready", timeout=5)
            assert ready.json()["reason"] == reason, ready.text
            assert "NotTheSecretKey0123456789" not in ready.text + server.logs()
    finally:
        absent.stop()
        denied.stop()


def test_a_failed_profile_leaves_nothing_in_the_store(
    s3: S3Server, trained: dict[str, Any], tmp_path: Path
) -> None:
    root, env = trained["root"], trained["env"]
    bad = {"source": {"builtin": "iris"}, "target": "species", "validation": {"minRows": 1000}}
    code, result = entrypoint(
        [
            "profile",
            "--spec-json",
            json.dumps(bad),
            "--namespace",
            "ns",
            "--name",
            "bad",
            "--artifact-root",
            root,
        ],
        env,
        tmp_path,
    )
    assert (code, result["reason"]) == (3, "ValidationFailed"), result
    assert s3.listing(f"{trained['bucket']}/mlkube/datasets/ns/bad") == []
