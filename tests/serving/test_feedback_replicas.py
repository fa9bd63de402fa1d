"""Feedback behind a Service: a label reaching any replica of the model is scored.

Three real server processes serve the same model (as a Deployment's replicas do); each
prediction goes to one replica and its feedback to another, as a load-balanced Service
would route them. Every label must show up in the replicas' ``mlkube_feedback_*``
series, summed over the replicas, as the operator's analysis sums them.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from sklearn.linear_model import Ridge

from mlkube_serving.feedback import FeedbackIds

from .conftest import Artifact, ServerProc, _write, start_server
from .test_server_http import metric, post, scrape


@pytest.fixture(scope="module")
def replicas(
    artifacts: dict[str, Artifact], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, list[ServerProc]]]:
    """Three replicas each of iris (classifier) and reg (regressor), all of their own (the
    session's servers are left alone: other tests read their counters)."""
    tmp = tmp_path_factory.mktemp("replica-logs")
    extra = {name: [start_server(name, artifacts[name], tmp) for _ in range(3)] for name in ("iris", "reg")}
    try:
        for procs in extra.values():
            for p in procs:
                p.wait_ready()
        yield extra
    finally:
        for procs in extra.values():
            for p in procs:
                p.stop()


def _totals(procs: list[ServerProc], model: str, name: str, **labels: str) -> float:
    return sum(metric(scrape(p), name, model=model, **labels) for p in procs)


def test_classifier_feedback_to_another_replica_counts_every_label(
    replicas: dict[str, list[ServerProc]], artifacts: dict[str, Artifact]
) -> None:
    procs, art = replicas["iris"], artifacts["iris"]
    before = {o: _totals(procs, "iris", "mlkube_feedback_total", outcome=o) for o in ("correct", "incorrect")}
    unknown_before = _totals(procs, "iris", "mlkube_feedback_total", outcome="unknown_id")
    rng = np.random.default_rng(3)
    turn = itertools.cycle(range(3))
    predictions: list[tuple[int, str, list[Any]]] = []  # (replica, feedback id, predicted)
    for i in range(30):
        k = next(turn)
        rows = art.x[rng.integers(0, len(art.x), 1 + i % 4)]
        if i % 2:
            r = post(procs[k], "/v1/models/iris:predict", {"instances": rows.tolist()})
            assert r.status_code == 200, r.text
            body = r.json()
            predictions.append((k, body["id"], body["predictions"]))
        else:
            r = post(
                procs[k],
                "/v2/models/iris/infer",
                {
                    "inputs": [
                        {"name": "x", "shape": list(rows.shape), "datatype": "FP64", "data": rows.tolist()}
                    ]
                },
            )
            assert r.status_code == 200, r.text
            body = r.json()
            predictions.append((k, body["id"], body["outputs"][0]["data"]))
    # Feedback for each prediction reaches the next replica, never the one that predicted.
    labels: list[tuple[int, str, list[Any]]] = []
    wrong = 0
    for n, (k, rid, predicted) in enumerate(predictions):
        truth = list(predicted)
        if n % 3 == 0:
            truth[0] = (truth[0] + 1) % 3
            wrong += 1
        labels.append(((k + 1) % 3, rid, truth))
    for target in range(3):
        items = [{"id": rid, "label": truth} for k, rid, truth in labels if k == target]
        r = post(procs[target], "/v2/models/iris/feedback", {"feedback": items})
        assert r.status_code == 200, r.text
        answer = r.json()
        assert answer["unknownIds"] == [] and answer["accepted"] == len(items), answer
        assert answer["scoredRows"] == sum(len(t) for k, _, t in labels if k == target)
    rows_sent = sum(len(p) for _, _, p in predictions)
    correct = _totals(procs, "iris", "mlkube_feedback_total", outcome="correct") - before["correct"]
    incorrect = _totals(procs, "iris", "mlkube_feedback_total", outcome="incorrect") - before["incorrect"]
    assert (correct, incorrect) == (rows_sent - wrong, wrong)
    assert _totals(procs, "iris", "mlkube_feedback_total", outcome="unknown_id") == unknown_before

    # Each id is scored once per replica: the same call again counts nothing there.
    target = 0
    items = [{"id": rid, "label": truth} for k, rid, truth in labels if k == target]
    again = post(procs[target], "/v2/models/iris/feedback", {"feedback": items}).json()
    assert again["accepted"] == 0 and len(again["unknownIds"]) == len(items)


def test_regressor_feedback_to_another_replica_is_scored_exactly(
    replicas: dict[str, list[ServerProc]], artifacts: dict[str, Artifact]
) -> None:
    procs, art = replicas["reg"], artifacts["reg"]
    before_sq = _totals(procs, "reg", "mlkube_feedback_squared_error_sum")
    before_n = _totals(procs, "reg", "mlkube_feedback_total", outcome="scored")
    expected_sq = 0.0
    rows_sent = 0
    for i in range(9):
        k = i % 3
        rows = art.x[i * 5 : i * 5 + 1 + i % 3]
        body = post(procs[k], "/v1/models/reg:predict", {"instances": rows.tolist()}).json()
        truth = [float(v) + 0.5 * (j + 1) for j, v in enumerate(body["predictions"])]
        expected_sq += sum((0.5 * (j + 1)) ** 2 for j in range(len(truth)))
        rows_sent += len(truth)
        r = post(
            procs[(k + 2) % 3], "/v2/models/reg/feedback", {"feedback": [{"id": body["id"], "label": truth}]}
        )
        assert r.json() == {"accepted": 1, "unknownIds": [], "scoredRows": len(truth)}, r.text
    assert _totals(procs, "reg", "mlkube_feedback_total", outcome="scored") - before_n == rows_sent
    sq = _totals(procs, "reg", "mlkube_feedback_squared_error_sum") - before_sq
    assert sq == pytest.approx(expected_sq, rel=1e-9)


def test_client_ids_are_echoed_and_the_feedback_id_travels(
    replicas: dict[str, list[ServerProc]], artifacts: dict[str, Artifact]
) -> None:
    procs, art = replicas["iris"], artifacts["iris"]
    rows = art.x[[0, 75]]
    v1 = post(procs[0], "/v1/models/iris:predict", {"instances": rows.tolist(), "id": "order-17"}).json()
    assert v1["id"] == "order-17" and v1["feedbackId"] != "order-17"
    v2 = post(
        procs[0],
        "/v2/models/iris/infer",
        {
            "id": "order-18",
            "inputs": [{"name": "x", "shape": [2, 4], "datatype": "FP64", "data": rows.tolist()}],
        },
    ).json()
    assert v2["id"] == "order-18"
    feedback_id = v2["parameters"]["mlkube_feedback_id"]
    # The client's own id is known only where it was served; the feedback id anywhere.
    r = post(
        procs[1],
        "/v2/models/iris/feedback",
        {
            "feedback": [
                {"id": "order-17", "label": v1["predictions"]},
                {"id": feedback_id, "label": v2["outputs"][0]["data"]},
            ]
        },
    ).json()
    assert r == {"accepted": 1, "unknownIds": ["order-17"], "scoredRows": 2}
    r = post(
        procs[0], "/v2/models/iris/feedback", {"feedback": [{"id": "order-17", "label": v1["predictions"]}]}
    )
    assert r.json()["accepted"] == 1


def test_ids_of_another_model_are_scored_for_it_never_as_this_models(
    replicas: dict[str, list[ServerProc]], servers: dict[str, ServerProc], artifacts: dict[str, Artifact]
) -> None:
    iris = replicas["iris"][1]
    rows = artifacts["iris"].x[:3]
    body = post(iris, "/v1/models/iris:predict", {"instances": rows.tolist()}).json()
    predicted = body["predictions"]
    labels = [predicted[0], predicted[1], (predicted[2] + 1) % 3]  # two right, one wrong
    # The "lr" server serves another model (another sha256) with the same classes, as the
    # stable pods of a canary do: the label counts for iris (the model that predicted),
    # under its sha256 prefix, and never as lr's own accuracy.
    lr = servers["lr"]
    tag = artifacts["iris"].sha256[:8]

    def counts() -> tuple[float, ...]:
        text = scrape(lr)
        own = tuple(
            metric(text, "mlkube_feedback_total", model="lr", outcome=o)
            for o in ("correct", "incorrect", "other_model")
        )
        behalf = tuple(
            metric(text, "mlkube_feedback_for_model_total", model="lr", predicted_by=tag, outcome=o)
            for o in ("correct", "incorrect")
        )
        return own + behalf

    before = counts()
    r = httpx.post(
        f"{lr.url}/v2/models/lr/feedback",
        json={"feedback": [{"id": body["id"], "label": labels}]},
        timeout=10,
    ).json()
    assert r == {"accepted": 1, "unknownIds": [], "scoredRows": 3, "otherModelIds": [body["id"]]}
    after = counts()
    assert [a - b for a, b in zip(after, before, strict=True)] == [0, 0, 1, 2, 1]
    # Scored once per replica, as its own ids are.
    r = httpx.post(
        f"{lr.url}/v2/models/lr/feedback",
        json={"feedback": [{"id": body["id"], "label": labels}]},
        timeout=10,
    ).json()
    assert r["accepted"] == 0 and r["unknownIds"] == [body["id"]]
    assert counts()[3:] == after[3:]
    # A regressor cannot read a classifier's prediction: counted as other_model only.
    reg = replicas["reg"][0]
    before_reg = metric(scrape(reg), "mlkube_feedback_total", model="reg", outcome="other_model")
    body = post(iris, "/v1/models/iris:predict", {"instances": rows[:1].tolist()}).json()
    r = post(reg, "/v2/models/reg/feedback", {"feedback": [{"id": body["id"], "label": 1.5}]}).json()
    assert r == {"accepted": 0, "unknownIds": [], "scoredRows": 0, "otherModelIds": [body["id"]]}
    assert metric(scrape(reg), "mlkube_feedback_total", model="reg", outcome="other_model") == before_reg + 1
    assert not [ln for ln in scrape(reg).splitlines() if ln.startswith("mlkube_feedback_for_model_total{")]
    # One character changed: the checksum fails, so it is an unknown id, as before.
    damaged = body["id"][:-3] + ("A" if body["id"][-3] != "A" else "B") + body["id"][-2:]
    r = post(replicas["iris"][2], "/v2/models/iris/feedback", {"feedback": [{"id": damaged, "label": 0}]})
    assert r.json()["unknownIds"] == [damaged]


def test_a_regressors_ids_are_scored_for_it_by_another_regressor(
    replicas: dict[str, list[ServerProc]], artifacts: dict[str, Artifact], tmp_path: Path
) -> None:
    """A regression canary: its labels reaching the stable pods count as its errors, there.

    `canary` serves another regressor (another sha256) under the same name, as a canary's
    pods do; the label of each of its predictions is sent to a stable replica, which scores
    it for the canary in mlkube_feedback_for_model_squared_error/_abs_error{predicted_by}
    and never in its own error summaries.
    """
    art = artifacts["reg"]
    ridge = Ridge(alpha=10.0).fit(art.x, art.y)
    meta = json.loads((art.path.parent / "metadata.json").read_text())
    meta.pop("referencePredictions", None)
    other = _write(tmp_path, "reg-canary", ridge, meta, None, art.x, art.y)
    assert other.sha256 != art.sha256
    canary = start_server("reg", other, tmp_path)
    try:
        canary.wait_ready()
        stable = replicas["reg"][1]
        tag = other.sha256[:8]

        def counts() -> list[float]:
            text = scrape(stable)
            return [
                metric(text, "mlkube_feedback_for_model_squared_error_sum", model="reg", predicted_by=tag),
                metric(text, "mlkube_feedback_for_model_squared_error_count", model="reg", predicted_by=tag),
                metric(text, "mlkube_feedback_for_model_abs_error_sum", model="reg", predicted_by=tag),
                metric(text, "mlkube_feedback_squared_error_sum", model="reg"),
                metric(text, "mlkube_feedback_squared_error_count", model="reg"),
                metric(text, "mlkube_feedback_total", model="reg", outcome="other_model"),
            ]

        before = counts()
        body = post(canary, "/v1/models/reg:predict", {"instances": art.x[:4].tolist()}).json()
        errors = [0.5, -1.0, 2.0, -0.25]
        truth = [float(v) + e for v, e in zip(body["predictions"], errors, strict=True)]
        r = post(stable, "/v2/models/reg/feedback", {"feedback": [{"id": body["id"], "label": truth}]}).json()
        assert r == {"accepted": 1, "unknownIds": [], "scoredRows": 4, "otherModelIds": [body["id"]]}
        delta = [a - b for a, b in zip(counts(), before, strict=True)]
        assert delta[0] == pytest.approx(sum(e * e for e in errors), rel=1e-9)
        assert delta[1] == 4
        assert delta[2] == pytest.approx(sum(abs(e) for e in errors), rel=1e-9)
        assert delta[3:] == [0, 0, 1]  # never the stable model's own errors
        # The canary scores the stable model's ids for it the same way.
        body = post(stable, "/v1/models/reg:predict", {"instances": art.x[:1].tolist()}).json()
        r = post(canary, "/v2/models/reg/feedback", {"feedback": [{"id": body["id"], "label": 0.0}]}).json()
        assert r["accepted"] == 1 and r["otherModelIds"] == [body["id"]]
        text = scrape(canary)
        got = metric(
            text, "mlkube_feedback_for_model_squared_error_sum", model="reg", predicted_by=art.sha256[:8]
        )
        assert got == pytest.approx(body["predictions"][0] ** 2, rel=1e-9)
    finally:
        canary.stop()


@pytest.mark.parametrize("n_classes", [2, 3, 5, 200, 256, 300, 40000])
def test_feedback_id_round_trip(n_classes: int) -> None:
    ids = FeedbackIds("ab" * 32, n_classes)
    rng = np.random.default_rng(n_classes)
    for rows in (1, 2, 7, 8, 9, 100):
        index = rng.integers(0, n_classes, rows)
        rid = ids.encode(f"nonce-{rows}", index, None)
        assert rid is not None and rid.startswith(f"nonce-{rows}.")
        decoded = ids.decode(rid)
        assert decoded is not None and decoded.model_tag == bytes.fromhex("abababab")
        assert decoded.class_index is not None and decoded.class_index.tolist() == index.tolist()
    values = rng.normal(0, 1e6, 50)
    decoded = ids.decode(ids.encode("v", None, values) or "")
    assert decoded is not None and decoded.values is not None
    assert decoded.values.tobytes() == values.tobytes()  # bit-exact
    # Too large to carry in an id: the caller falls back to a plain id.
    assert ids.encode("big", None, np.zeros(10_000)) is None
    for junk in ("", "plain-id", "x.", ".abc", "a.!!!!", "a.AAAA", "a-1.AQAAAAA"):
        assert ids.decode(junk) is None


def test_ids_stay_short_for_typical_requests() -> None:
    # 3 classes, one row: the id is the visible part plus 21 characters (the model tag, the
    # class list's digest, the prediction and the checksum, in base64url).
    ids = FeedbackIds("0" * 64, 3, ["0", "1", "2"])
    rid = ids.encode("0123456789ab-1", np.array([2]), None)
    assert rid is not None and len(rid) <= len("0123456789ab-1") + 21


def test_a_class_list_digest_travels_with_class_ids_and_old_ids_still_decode() -> None:
    ids = FeedbackIds("ab" * 32, 3, ["setosa", "versicolor", "virginica"])
    decoded = ids.decode(ids.encode("n-1", np.array([0, 2]), None) or "")
    assert decoded is not None and decoded.classes_tag == ids.classes_tag
    assert FeedbackIds("ab" * 32, 3, ["a", "b", "c"]).classes_tag != ids.classes_tag
    assert FeedbackIds("ab" * 32, 3, ["virginica", "versicolor", "setosa"]).classes_tag != ids.classes_tag
    # A version-1 id (before the digest): decoded, with no digest, so never scored for another model.
    import base64

    from mlkube_serving import feedback as fb

    body = bytes((1,)) + bytes.fromhex("abababab") + bytes((0, 2)) + bytes((2,)) + bytes((0b00100000,))
    token = base64.urlsafe_b64encode(body + fb._check("n-2", body)).rstrip(b"=").decode()
    old = ids.decode(f"n-2.{token}")
    assert old is not None and old.classes_tag is None and old.class_index is not None
    assert old.class_index.tolist() == [0, 2]


async def test_string_classes_travel_between_two_in_process_replicas(artifacts: dict[str, Artifact]) -> None:
    """The pipeline model ('big'/'small', generic and fast path): a label scored on the other replica."""
    from mlkube_serving.app import ServingApp
    from mlkube_serving.settings import Settings

    art = artifacts["pipe"]
    apps = []
    for fast in (True, False):
        app = ServingApp(
            Settings(
                model_uri=f"file://{art.path}",
                model_sha256=art.sha256,
                model_name="pipe",
                reference_profile=str(art.profile),
                fast_path=fast,
            )
        )
        app.start_loading()
        await app.wait_loaded()
        apps.append(app)
    try:
        clients = [httpx.AsyncClient(transport=httpx.ASGITransport(app=a), base_url="http://r") for a in apps]
        rows = art.x.iloc[:5].to_dict(orient="records")
        for k in range(2):
            answer = (await clients[k].post("/v1/models/pipe:predict", json={"instances": rows})).json()
            truth = list(answer["predictions"])
            truth[0] = "small" if truth[0] == "big" else "big"
            other = clients[1 - k]
            r = await other.post(
                "/v2/models/pipe/feedback", json={"feedback": [{"id": answer["id"], "label": truth}]}
            )
            assert r.json() == {"accepted": 1, "unknownIds": [], "scoredRows": 5}
            # Each replica scored one label list (of the other's prediction): 4 right, 1 wrong.
            series = apps[1 - k].metrics.feedback.series
            assert (series[("pipe", "correct")], series[("pipe", "incorrect")]) == (4, 1)
        for c in clients:
            await c.aclose()
    finally:
        for app in apps:
            await app.shutdown()
