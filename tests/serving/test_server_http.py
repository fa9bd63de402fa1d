"""The model server as a client sees it: a real uvicorn process on loopback, over HTTP."""

from __future__ import annotations

import gzip
import json
import re
from typing import Any

import httpx
import numpy as np
import pytest

from .conftest import Artifact, ServerProc

JSON = {"Content-Type": "application/json"}


def post(server: ServerProc, path: str, body: Any, **kw: Any) -> httpx.Response:
    return httpx.post(f"{server.url}{path}", json=body, timeout=10, **kw)


def metric(text: str, name: str, **labels: str) -> float:
    """Value of one sample in Prometheus text exposition (0 if absent)."""
    for line in text.splitlines():
        if not line.startswith(name + "{") and line.split(" ")[0] != name:
            continue
        series, value = line.rsplit(" ", 1)
        found = dict(re.findall(r'(\w+)="((?:[^"\\]|\\.)*)"', series))
        if series.split("{")[0] == name and all(found.get(k) == v for k, v in labels.items()):
            return float(value)
    return 0.0


def scrape(server: ServerProc) -> str:
    r = httpx.get(f"{server.url}/metrics", timeout=10)
    assert r.status_code == 200
    return r.text


# -- health and metadata -----------------------------------------------------------------------------


def test_health_and_metadata(servers: dict[str, ServerProc], artifacts: dict[str, Artifact]) -> None:
    s = servers["iris"]
    assert httpx.get(f"{s.url}/v2/health/live").json() == {"live": True}
    assert httpx.get(f"{s.url}/v2/health/ready").json() == {"ready": True}
    assert httpx.get(f"{s.url}/v2/models/iris/ready").json() == {"name": "iris", "ready": True}
    assert httpx.get(f"{s.url}/v1/models/iris").json() == {"name": "iris", "ready": True}
    assert httpx.get(f"{s.url}/v1/models").json() == {"models": ["iris"]}
    assert httpx.get(f"{s.url}/v2").json()["extensions"]
    meta = httpx.get(f"{s.url}/v2/models/iris").json()
    assert meta["name"] == "iris"
    assert meta["inputs"] == [{"name": "input-0", "datatype": "FP64", "shape": [-1, 4]}]
    assert meta["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [-1]},
        {"name": "predict_proba", "datatype": "FP64", "shape": [-1, 3]},
    ]
    assert meta["parameters"]["sha256"] == artifacts["iris"].sha256
    assert meta["parameters"]["featureNames"][0] == "sepal_length"
    version = meta["versions"][0]
    assert httpx.get(f"{s.url}/v2/models/iris/versions/{version}/ready").status_code == 200
    assert httpx.get(f"{s.url}/v2/models/iris/versions/nope/ready").status_code == 404


# -- predictions ------------------------------------------------------------------------------------


def test_v1_predict_lists_and_objects(servers: dict[str, ServerProc], artifacts: dict[str, Artifact]) -> None:
    s, art = servers["iris"], artifacts["iris"]
    rows = art.x[:5]
    expected = art.model.predict(rows).tolist()
    r = post(s, "/v1/models/iris:predict", {"instances": rows.tolist()})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["predictions"] == expected
    assert isinstance(body["id"], str) and body["id"]
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    objects = [dict(zip(names, row, strict=True)) for row in rows.tolist()]
    r = post(s, "/v1/models/iris:predict", {"instances": objects, "id": "my-id"})
    body = r.json()
    # The client's id is echoed; the id any replica can score travels beside it.
    assert body.pop("feedbackId").count(".") == 1
    assert body == {"predictions": expected, "id": "my-id"}


@pytest.mark.parametrize("datatype", ["FP32", "FP64", "INT64"])
def test_v2_infer_datatypes(
    servers: dict[str, ServerProc], artifacts: dict[str, Artifact], datatype: str
) -> None:
    s, art = servers["iris"], artifacts["iris"]
    rows = art.x[:6]
    if datatype == "INT64":
        rows = np.round(rows).astype(np.int64)
    data = rows.ravel().tolist()
    r = post(
        s,
        "/v2/models/iris/infer",
        {"inputs": [{"name": "x", "shape": [6, 4], "datatype": datatype, "data": data}]},
    )
    assert r.status_code == 200, r.text
    body = r.json()
    cast = rows.astype(np.float32).astype(np.float64) if datatype == "FP32" else rows.astype(np.float64)
    assert body["outputs"] == [
        {"name": "predict", "datatype": "INT64", "shape": [6], "data": art.model.predict(cast).tolist()}
    ]
    assert body["model_name"] == "iris" and body["id"]


def test_v2_infer_id_proba_and_nested_data(
    servers: dict[str, ServerProc], artifacts: dict[str, Artifact]
) -> None:
    s, art = servers["iris"], artifacts["iris"]
    rows = art.x[48:53]
    body = {
        "id": "req-42",
        "inputs": [{"name": "x", "shape": [5, 4], "datatype": "FP64", "data": rows.tolist()}],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    out = post(s, "/v2/models/iris/infer", body).json()
    assert out["id"] == "req-42"
    by_name = {o["name"]: o for o in out["outputs"]}
    assert by_name["predict"]["data"] == art.model.predict(rows).tolist()
    proba = np.asarray(by_name["predict_proba"]["data"]).reshape(by_name["predict_proba"]["shape"])
    np.testing.assert_allclose(proba, art.model.predict_proba(rows))


def test_v2_one_row_shape(servers: dict[str, ServerProc], artifacts: dict[str, Artifact]) -> None:
    s, art = servers["iris"], artifacts["iris"]
    row = art.x[120]
    r = post(
        s,
        "/v2/models/iris/infer",
        {"inputs": [{"name": "x", "shape": [4], "datatype": "FP64", "data": row.tolist()}]},
    )
    assert r.json()["outputs"][0]["data"] == art.model.predict(row.reshape(1, -1)).tolist()


def test_v2_binary_tensors(servers: dict[str, ServerProc], artifacts: dict[str, Artifact]) -> None:
    s, art = servers["iris"], artifacts["iris"]
    rows = art.x[:3].astype(np.float32)
    raw = rows.tobytes()
    header = json.dumps(
        {
            "inputs": [
                {
                    "name": "x",
                    "shape": [3, 4],
                    "datatype": "FP32",
                    "parameters": {"binary_data_size": len(raw)},
                }
            ],
            "outputs": [{"name": "predict", "parameters": {"binary_data": True}}],
        }
    ).encode()
    r = httpx.post(
        f"{s.url}/v2/models/iris/infer",
        content=header + raw,
        headers={
            "Inference-Header-Content-Length": str(len(header)),
            "Content-Type": "application/octet-stream",
        },
    )
    assert r.status_code == 200, r.text
    n = int(r.headers["inference-header-content-length"])
    meta = json.loads(r.content[:n])
    assert meta["outputs"][0]["parameters"]["binary_data_size"] == 3 * 8
    got = np.frombuffer(r.content[n:], dtype="<i8")
    assert got.tolist() == art.model.predict(rows.astype(np.float64)).tolist()


def test_gzip_body(servers: dict[str, ServerProc], artifacts: dict[str, Artifact]) -> None:
    s, art = servers["iris"], artifacts["iris"]
    body = gzip.compress(json.dumps({"instances": art.x[:2].tolist()}).encode())
    r = httpx.post(
        f"{s.url}/v1/models/iris:predict", content=body, headers={**JSON, "Content-Encoding": "gzip"}
    )
    assert r.json()["predictions"] == art.model.predict(art.x[:2]).tolist()


def test_regression(servers: dict[str, ServerProc], artifacts: dict[str, Artifact]) -> None:
    s, art = servers["reg"], artifacts["reg"]
    r = post(s, "/v1/models/reg:predict", {"instances": art.x[:4].tolist(), "id": "r1"})
    np.testing.assert_allclose(r.json()["predictions"], art.model.predict(art.x[:4]))
    meta = httpx.get(f"{s.url}/v2/models/reg").json()
    assert [o["name"] for o in meta["outputs"]] == ["predict"]
    truth = (art.model.predict(art.x[:4]) + np.array([1.0, -1.0, 2.0, 0.0])).tolist()
    fb = post(s, "/v2/models/reg/feedback", {"feedback": [{"id": "r1", "label": truth}]}).json()
    assert fb["accepted"] == 1
    text = scrape(s)
    assert metric(text, "mlkube_feedback_squared_error_sum", model="reg") == pytest.approx(6.0)
    assert metric(text, "mlkube_feedback_abs_error_sum", model="reg") == pytest.approx(4.0)
    assert metric(text, "mlkube_feedback_squared_error_count", model="reg") == 4
    assert metric(text, "mlkube_feedback_total", model="reg", outcome="scored") == 4
    assert metric(text, "mlkube_prediction_value_count", model="reg") >= 4
    assert sum(metric(text, "mlkube_prediction_bin_total", model="reg", bin=str(b)) for b in range(12)) >= 4


def test_pipeline_with_categorical_column(
    servers: dict[str, ServerProc], artifacts: dict[str, Artifact]
) -> None:
    s, art = servers["pipe"], artifacts["pipe"]
    frame = art.x.iloc[:4]
    expected = art.model.predict(frame).tolist()
    objects = frame.to_dict(orient="records")
    r = post(s, "/v1/models/pipe:predict", {"instances": objects})
    assert r.status_code == 200, r.text
    assert r.json()["predictions"] == expected
    # One V2 input per feature, as MLServer's pandas codec sends them; a missing number is imputed.
    body = {
        "inputs": [
            {"name": "size", "shape": [2], "datatype": "FP64", "data": [12.0, None]},
            {"name": "colour", "shape": [2], "datatype": "BYTES", "data": ["red", "purple"]},
        ],
        "outputs": [{"name": "predict"}, {"name": "predict_proba"}],
    }
    r = post(s, "/v2/models/pipe/infer", body)
    assert r.status_code == 200, r.text
    outputs = {o["name"]: o for o in r.json()["outputs"]}
    assert outputs["predict"]["datatype"] == "BYTES"
    assert set(outputs["predict"]["data"]) <= {"big", "small"}
    text = scrape(s)
    assert metric(text, "mlkube_feature_level_total", model="pipe", feature="colour", level="red") >= 2
    assert metric(text, "mlkube_feature_level_total", model="pipe", feature="colour", level="__other__") >= 1
    assert metric(text, "mlkube_feature_bin_total", model="pipe", feature="size", bin="missing") >= 1
    assert (
        metric(text, "mlkube_predictions_total", model="pipe", **{"class": "big"})
        + metric(text, "mlkube_predictions_total", model="pipe", **{"class": "small"})
        >= 6
    )


# -- feedback and metrics -------------------------------------------------------------------------------


def test_feedback_scores_by_request_id(
    servers: dict[str, ServerProc], artifacts: dict[str, Artifact]
) -> None:
    s, art = servers["iris"], artifacts["iris"]
    before = scrape(s)
    rows = art.x[[0, 60, 120]]
    pred = post(s, "/v1/models/iris:predict", {"instances": rows.tolist(), "id": "fb-1"}).json()[
        "predictions"
    ]
    one = post(s, "/v1/models/iris:predict", {"instances": [rows[0].tolist()]}).json()
    truth = list(pred)
    truth[2] = (truth[2] + 1) % 3  # one wrong
    r = post(
        s,
        "/v2/models/iris/feedback",
        {
            "feedback": [
                {"id": "fb-1", "label": truth},
                {"id": one["id"], "label": pred[0]},
                {"id": "never", "label": 1},
            ]
        },
    )
    assert r.status_code == 200, r.text
    assert r.json() == {"accepted": 2, "unknownIds": ["never"], "scoredRows": 4}
    after = scrape(s)

    def delta(**labels: str) -> float:
        return metric(after, "mlkube_feedback_total", model="iris", **labels) - metric(
            before, "mlkube_feedback_total", model="iris", **labels
        )

    assert delta(outcome="correct") == 3
    assert delta(outcome="incorrect") == 1
    assert delta(outcome="unknown_id") == 1
    # An id is scored once: a retry is reported as unknown, not counted twice.
    again = post(s, "/v2/models/iris/feedback", {"feedback": [{"id": "fb-1", "label": truth}]}).json()
    assert again["unknownIds"] == ["fb-1"]


def test_feedback_errors(servers: dict[str, ServerProc], artifacts: dict[str, Artifact]) -> None:
    s, art = servers["iris"], artifacts["iris"]
    post(s, "/v1/models/iris:predict", {"instances": art.x[:2].tolist(), "id": "two-rows"})
    r = post(s, "/v2/models/iris/feedback", {"feedback": [{"id": "two-rows", "label": 1}]})
    assert r.status_code == 400 and "2 labels" in r.json()["error"]
    r = post(s, "/v2/models/iris/feedback", {"feedback": []})
    assert r.status_code == 400
    r = post(s, "/v2/models/iris/feedback", {"labels": {}})
    assert r.status_code == 400 and "feedback" in r.json()["error"]


def test_metrics_move(servers: dict[str, ServerProc], artifacts: dict[str, Artifact]) -> None:
    s, art = servers["iris"], artifacts["iris"]
    before = scrape(s)
    rows = np.array([[0.0, 0.0, 0.0, 0.0], [100.0, 100.0, 100.0, 100.0]])
    r = post(s, "/v1/models/iris:predict", {"instances": rows.tolist()})
    assert r.status_code == 200
    post(s, "/v1/models/iris:predict", {"instances": [[1, 2]]})
    after = scrape(s)
    route = "/v1/models/{name}:predict"

    def delta(name: str, **labels: str) -> float:
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert delta("mlkube_requests_total", model="iris", route=route, code="200") == 1
    assert delta("mlkube_requests_total", model="iris", route=route, code="400") == 1
    assert delta("mlkube_request_duration_seconds_count", model="iris", route=route) == 2
    assert delta("mlkube_request_duration_seconds_bucket", model="iris", route=route, le="1.0") == 2
    assert delta("mlkube_feature_bin_total", model="iris", feature="sepal_length", bin="0") == 1
    assert delta("mlkube_feature_bin_total", model="iris", feature="sepal_length", bin="11") == 1
    preds = art.model.predict(rows)
    for c in set(preds.tolist()):
        assert delta("mlkube_predictions_total", model="iris", **{"class": str(c)}) == preds.tolist().count(c)
    assert delta("mlkube_batch_size_count", model="iris") >= 1
    assert metric(after, "mlkube_model_info", model="iris", sha256=art.sha256) == 1
    assert metric(after, "mlkube_model_ready", model="iris") == 1
    assert "# TYPE mlkube_request_duration_seconds histogram" in after
    assert 'le="0.0005"' in after


# -- bad input ------------------------------------------------------------------------------------------

BAD_V1 = [
    ({"instances": [[1, 2, 3]]}, "expected 4 features per row, got 3"),
    ({"instances": [[1, 2, 3, "x"]]}, "instances[0][3] is the string 'x'"),
    ({"instances": [[1, 2, 3, 4], [1, 2]]}, "rows have different lengths"),
    ({"instances": []}, "empty"),
    ({"instances": [1, 2, 3, 4]}, "each row must be a list"),
    ({"instances": [[[1, 2, 3, 4]]]}, "expected rows of 4 features"),
    ({"rows": [[1, 2, 3, 4]]}, 'no "instances"'),
    ([[1, 2, 3, 4]], "JSON object"),
    ({"instances": "1,2,3,4"}, '"instances" must be a list'),
    ({"instances": [{"sepal_length": 1}]}, "missing feature(s) 'sepal_width'"),
    (
        {"instances": [{"sepal_length": 1, "sepal_width": 1, "petal_length": 1, "petal_width": 1, "x": 2}]},
        "unknown feature(s) 'x'",
    ),
    ({"instances": [[1, 2, 3, 4], {"a": 1}]}, "row 1 is an object, not a list"),
    ({"instances": [[1, 2, 3, 4]], "id": 7}, '"id" must be a non-empty string'),
]


@pytest.mark.parametrize(("body", "message"), BAD_V1, ids=[m for _, m in BAD_V1])
def test_bad_v1_input(servers: dict[str, ServerProc], body: Any, message: str) -> None:
    s = servers["iris"]
    r = post(s, "/v1/models/iris:predict", body)
    assert r.status_code == 400, r.text
    assert r.headers["content-type"] == "application/json"
    assert message in r.json()["error"]
    assert "Traceback" not in r.text


def _v2(data: Any, shape: Any = (1, 4), datatype: str = "FP64", **extra: Any) -> dict[str, Any]:
    return {"inputs": [{"name": "x", "shape": list(shape), "datatype": datatype, "data": data}], **extra}


BAD_V2 = [
    (_v2([1, 2, 3]), "has 3 values but shape [1, 4] needs 4"),
    (_v2([1, 2, 3, 4, 5, 6], shape=(2, 3)), "expected 4 features per row, got 3"),
    (_v2([1, 2, 3, "4"]), "is the string '4'"),
    (_v2([1, 2, 3, 4], datatype="FP8"), "datatype 'FP8' is not supported"),
    (_v2([1.5, 2, 3, 4], datatype="INT32"), "non-integer"),
    (_v2([1, 2, 3, 400], datatype="INT8"), "out of range for INT8"),
    (_v2([1, 2, 3, 4], shape=(1, -4)), "negative dimension"),
    (_v2([1, 2, 3, 4], shape="1,4"), '"shape" must be a list'),
    (_v2([], shape=(0, 4)), "empty batch"),
    (_v2([1, 2, 3, 4], outputs=[{"name": "explain"}]), "unknown output 'explain'"),
    ({"inputs": []}, '"inputs" list'),
    ({"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64"}]}, 'no "data"'),
    (
        {
            "inputs": [
                {"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [1, 2, 3, 4]},
                {"name": "y", "shape": [1], "datatype": "FP64", "data": [1]},
            ]
        },
        "unknown input(s) 'x', 'y'",
    ),
]


@pytest.mark.parametrize(("body", "message"), BAD_V2, ids=[m for _, m in BAD_V2])
def test_bad_v2_input(servers: dict[str, ServerProc], body: Any, message: str) -> None:
    s = servers["iris"]
    r = post(s, "/v2/models/iris/infer", body)
    assert r.status_code == 400, r.text
    assert message in r.json()["error"], r.json()
    assert "Traceback" not in r.text


def test_null_and_nan_where_the_model_cannot_take_them(servers: dict[str, ServerProc]) -> None:
    s = servers["lr"]  # LogisticRegression alone cannot take missing values
    r = post(s, "/v1/models/lr:predict", {"instances": [[1, None, 3, 4]]})
    assert r.status_code == 400
    assert "feature 'sepal_width' is missing" in r.json()["error"]
    r = httpx.post(f"{s.url}/v1/models/lr:predict", content=b'{"instances": [[1, NaN, 3, 4]]}', headers=JSON)
    assert r.status_code == 400 and "invalid JSON" in r.json()["error"]
    r = httpx.post(
        f"{s.url}/v1/models/lr:predict", content=b'{"instances": [[1, 1e999, 3, 4]]}', headers=JSON
    )
    assert r.status_code == 400


def test_missing_values_pass_where_the_model_takes_them(servers: dict[str, ServerProc]) -> None:
    s = servers["iris"]  # forests take NaN
    r = post(s, "/v1/models/iris:predict", {"instances": [[5.0, None, 1.4, 0.2]]})
    assert r.status_code == 200, r.text
    assert (
        metric(scrape(s), "mlkube_feature_bin_total", model="iris", feature="sepal_width", bin="missing") >= 1
    )


def test_transport_errors(servers: dict[str, ServerProc]) -> None:
    s = servers["lr"]  # started with --max-body-bytes 4096
    good = {"instances": [[1, 2, 3, 4]]}
    r = httpx.post(f"{s.url}/v1/models/lr:predict", content=b"{not json", headers=JSON)
    assert r.status_code == 400 and r.json()["error"].startswith("invalid JSON")
    r = httpx.post(f"{s.url}/v1/models/lr:predict", content=b"", headers=JSON)
    assert r.status_code == 400 and "empty" in r.json()["error"]
    r = httpx.post(
        f"{s.url}/v1/models/lr:predict", content=json.dumps(good), headers={"Content-Type": "text/plain"}
    )
    assert r.status_code == 415 and "text/plain" in r.json()["error"]
    r = httpx.post(f"{s.url}/v1/models/lr:predict", content=b"x" * 5000, headers=JSON)
    assert r.status_code == 413 and "4096" in r.json()["error"]
    r = httpx.post(
        f"{s.url}/v1/models/lr:predict",
        content=gzip.compress(b" " * 100_000),
        headers={**JSON, "Content-Encoding": "gzip"},
    )
    assert r.status_code == 413
    r = httpx.post(
        f"{s.url}/v1/models/lr:predict", content=b"abc", headers={**JSON, "Content-Encoding": "br"}
    )
    assert r.status_code == 415
    r = post(s, "/v1/models/other:predict", good)
    assert r.status_code == 404 and "unknown model 'other'" in r.json()["error"]
    r = post(s, "/v2/models/other/infer", good)
    assert r.status_code == 404 and "unknown model 'other'" in r.json()["error"]
    r = httpx.get(f"{s.url}/nowhere")
    assert r.status_code == 404 and r.json()["error"]
    r = httpx.get(f"{s.url}/v1/models/lr:predict")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    # Chunked upload larger than the limit (no Content-Length to check up front).
    r = httpx.post(f"{s.url}/v1/models/lr:predict", content=iter([b"[" * 3000, b"[" * 3000]), headers=JSON)
    assert r.status_code == 413
    # Still serving after all of that.
    assert post(s, "/v1/models/lr:predict", good).status_code == 200


def test_no_access_log_and_json_logs(servers: dict[str, ServerProc]) -> None:
    s = servers["iris"]
    lines = [line for line in s.logs().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is a JSON object
    assert any(r.get("message") == "model ready" and r.get("reason") == "Ready" for r in records)
    assert not any("/v1/models" in r.get("message", "") for r in records)
