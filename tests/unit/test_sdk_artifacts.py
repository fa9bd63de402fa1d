"""Reading artifacts from a notebook: the reader pod built from an operator Job, profile.json
and trials.json as tables (pure parts; tests/integration/test_sdk.py reads the real ones
through a reader pod on the dev cluster).
"""

from __future__ import annotations

import json
from typing import Any

from mlkube import specs
from mlkube_operator.reconcile.jobs import build_job
from mlkube_operator.settings import Settings
from mlkube_operator.training.profiling import build_profile


def _job(settings: Settings) -> dict[str, Any]:
    return build_job(
        name="iris-profile-1",
        namespace="team-a",
        labels={"app.kubernetes.io/managed-by": "mlkube"},
        owner={"apiVersion": "mlkube.io/v1alpha1", "kind": "Dataset", "name": "iris", "uid": "u1"},
        args=["profile", "--secret-arg", "x"],
        settings=settings,
        backoff_limit=0,
        deadline_seconds=600,
        config_map="iris-data",
        env=[
            {
                "name": "MLKUBE_SOURCE_AWS_ACCESS_KEY_ID",
                "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}},
            }
        ],
    )


def test_the_reader_pod_is_the_jobs_image_security_and_artifact_volume_and_nothing_else() -> None:
    settings = Settings()
    job = _job(settings)
    uri = "file:///var/lib/mlkube/artifacts/datasets/team-a/iris/abc/profile.json"
    pod = specs.reader_pod(job, uri, "iris-profile-1-read-x")
    spec = pod["spec"]
    (container,) = spec["containers"]
    main = job["spec"]["template"]["spec"]["containers"][0]
    assert container["image"] == main["image"] == settings.trainer_image
    assert container["securityContext"] == main["securityContext"]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert spec["securityContext"]["runAsUser"] == 10001
    assert spec["automountServiceAccountToken"] is False and spec["restartPolicy"] == "Never"
    assert [v["name"] for v in spec["volumes"]] == ["artifacts"]  # not the Dataset's ConfigMap
    assert container["volumeMounts"] == [
        {"name": "artifacts", "mountPath": "/var/lib/mlkube/artifacts", "readOnly": True}
    ]
    assert container["command"][:2] == ["python", "-c"] and container["command"][-1] == uri
    assert "--secret-arg" not in json.dumps(pod)
    assert all(e["name"].startswith("MLKUBE_ARTIFACT_") for e in container["env"])  # no source credentials
    assert spec["activeDeadlineSeconds"] > 0


def test_with_an_object_store_the_reader_gets_its_credentials_by_reference_and_no_volume() -> None:
    settings = Settings(
        artifact_store="s3://bucket/prefix",
        artifact_endpoint="http://10.0.0.1:8333",
        artifact_credentials_secret="store-keys",
    )
    pod = specs.reader_pod(_job(settings), "s3://bucket/prefix/x/profile.json", "r")
    (container,) = pod["spec"]["containers"]
    assert pod["spec"]["volumes"] == [] and container["volumeMounts"] == []
    env = {e["name"]: e for e in container["env"]}
    assert env["MLKUBE_ARTIFACT_ENDPOINT"]["value"] == "http://10.0.0.1:8333"
    assert env["MLKUBE_ARTIFACT_AWS_SECRET_ACCESS_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "store-keys"


def test_the_reader_script_prints_a_local_artifact(tmp_path: Any, capsys: Any) -> None:
    path = tmp_path / "profile.json"
    path.write_text('{"rows": 3}')
    import sys

    saved = sys.argv
    sys.argv = ["-c", path.as_uri()]
    try:
        exec(compile(specs.READER_SCRIPT, "<reader>", "exec"), {})
    finally:
        sys.argv = saved
    assert capsys.readouterr().out == '{"rows": 3}'


def test_profile_rows_from_a_real_profile() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {"x": [1.0, 2.0, 3.0, 4.0, None], "color": ["r", "g", "r", "r", "b"], "y": [0, 1, 0, 1, 0]}
    )
    profile = build_profile(frame, ["x", "color"], "y", 4, "h" * 64)
    rows = {r["column"]: r for r in specs.profile_rows(profile)}
    assert list(rows) == [f["name"] for f in profile["features"]] + ["y"]
    x = rows["x"]
    assert (x["role"], x["kind"]) == ("feature", "numeric")
    assert x["mean"] == 2.5 and x["missing"] == 1  # missing values counted
    assert x["bin_edges"] == profile["features"][0]["binEdges"] and x["bins"] == len(x["fractions"])
    assert x["min"] == x["bin_edges"][0] and x["max"] == x["bin_edges"][-1]
    color = rows["color"]
    assert color["kind"] == "categorical" and color["levels"]["r"] == 0.6 and color["mean"] is None
    assert rows["y"]["role"] == "target"


def test_trial_rows_best_first_with_params_and_the_status_fallback() -> None:
    trials = {
        "metric": "accuracy",
        "trials": [
            {"rank": 1, "ok": True, "index": 2, "params": {"max_depth": 4}, "score": 0.95, "fitSeconds": 0.1},
            {"rank": 2, "ok": True, "index": 0, "params": {"max_depth": 2}, "score": 0.9, "fitSeconds": 0.1},
            {"ok": False, "index": 1, "params": {"max_depth": -1}, "reason": "TrialFailed", "message": "bad"},
        ],
    }
    rows = specs.trial_rows("r1", trials)
    assert [(r["trial"], r["rank"], r["ok"], r["score"], r["param.max_depth"]) for r in rows] == [
        (2, 1, True, 0.95, 4),
        (0, 2, True, 0.9, 2),
        (1, None, False, None, -1),
    ]
    assert rows[2]["reason"] == "TrialFailed" and all(r["run"] == "r1" for r in rows)
    status = {
        "top": [{"index": 2, "score": 0.95, "params": '{"max_depth": 4}'}],
        "failures": [{"index": 1, "reason": "TrialFailed"}],
    }
    fallback = specs.trial_rows_from_status("r1", status)
    assert [(r["trial"], r["rank"], r["ok"], r.get("param.max_depth")) for r in fallback] == [
        (2, 1, True, 4),
        (1, None, False, None),
    ]
