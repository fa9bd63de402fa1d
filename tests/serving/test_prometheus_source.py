"""The Prometheus source gives the analysis the same counts as scraping the pod itself.

A real Prometheus (Debian's `prometheus` package) scrapes a real model server every
second, with the `namespace` and `pod` target labels a PodMonitor adds. After traffic
(in-distribution rows, then drifted rows, and feedback) `window_counts()` is compared
with the server's own /metrics, and both are judged by `analyse()`.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from mlkube_operator.adapters.prometheus import window_counts
from mlkube_operator.analysis.counts import Counts, parse_metrics
from mlkube_operator.analysis.verdict import analyse
from mlkube_operator.api.modeldeployment import Thresholds, Verdict
from mlkube_operator.errors import TemporaryFailure

from .conftest import Artifact, ServerProc, free_port, start_server
from .test_prometheus import prometheus_scraping, query

NAMESPACE, POD, MODEL = "test", "pipe-0", "pipe"
WINDOW = 600  # longer than the test: the window holds every sample Prometheus took


@pytest.fixture()
def scraped(artifacts: dict[str, Artifact], tmp_path: Path) -> Iterator[tuple[ServerProc, str]]:
    server = start_server(MODEL, artifacts[MODEL], tmp_path)
    try:
        with prometheus_scraping(server, tmp_path, {"namespace": NAMESPACE, "pod": POD}) as url:
            yield server, url
    finally:
        server.stop()


def direct(server: ServerProc) -> Counts:
    return parse_metrics(httpx.get(f"{server.url}/metrics", timeout=5).text)


def scraped_value(prom: str, expr: str) -> float | None:
    try:
        result = query(prom, expr)
    except httpx.HTTPError:
        return None
    return float(result[0]["value"][1]) if result else None


def wait_caught_up(prom: str, server: ServerProc, timeout: float = 30) -> None:
    """Until Prometheus' latest sample of every request and feedback counter is the server's value."""
    want = direct(server)
    requests, feedback = sum(want.requests.values()), sum(want.feedback.values())
    selector = f'pod="{POD}",route=~"/v1/models/.*|/v2/models/.*",route=~".*:predict|.*/infer"'
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (
            scraped_value(prom, f"sum(mlkube_requests_total{{{selector}}})") == requests
            and scraped_value(prom, f'sum(mlkube_feedback_total{{pod="{POD}"}})') == feedback
        ):
            return
        time.sleep(0.2)
    raise AssertionError(f"Prometheus did not catch up with {requests} requests / {feedback} feedback")


def wait_for_target(prom: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while scraped_value(prom, f'mlkube_model_info{{pod="{POD}"}}') is None:
        if time.monotonic() > deadline:
            raise AssertionError("Prometheus never scraped the model server")
        time.sleep(0.2)


def v2_body(frame: Any) -> dict[str, Any]:
    return {
        "inputs": [
            {"name": "size", "shape": [len(frame)], "datatype": "FP64", "data": frame["size"].tolist()},
            {"name": "colour", "shape": [len(frame)], "datatype": "BYTES", "data": frame["colour"].tolist()},
        ]
    }


def send(client: httpx.Client, frame: Any, labels: Any, v2: bool) -> None:
    """One request; its rows' true labels go to the feedback route."""
    if v2:
        r = client.post(f"/v2/models/{MODEL}/infer", json=v2_body(frame))
    else:
        r = client.post(f"/v1/models/{MODEL}:predict", json={"instances": frame.to_dict(orient="records")})
    assert r.status_code == 200, r.text
    feedback = [{"id": r.json()["id"], "label": list(labels)}]
    assert client.post(f"/v2/models/{MODEL}/feedback", json={"feedback": feedback}).status_code == 200


def close(a: float, b: float) -> bool:
    """Prometheus' increase() is not a difference of two samples: it extrapolates.

    Towards the window's start it extrapolates the first sample back to zero (by at most
    half a scrape interval), towards the end the last sample to the window's end. With
    every series scraped once before the traffic and the window ending at the last scrape
    that gives the server's counts (measured: equal up to float rounding); the tolerance
    covers a series whose first sample is too far from zero to be extrapolated all the way.
    """
    return math.isclose(a, b, rel_tol=0.05, abs_tol=2.0)


def test_window_counts_match_the_servers_own_metrics(
    scraped: tuple[ServerProc, str], artifacts: dict[str, Artifact]
) -> None:
    server, prom = scraped
    art = artifacts[MODEL]
    x, y = art.x, np.asarray(art.y)
    with httpx.Client(base_url=server.url, timeout=5) as client:
        # Every route and feedback outcome once, scraped, before the traffic: a series
        # Prometheus first sees mid-traffic loses what it counted before that scrape.
        wait_for_target(prom)
        send(client, x.iloc[:2], y[:2], v2=False)
        send(client, x.iloc[2:4], ["small" if v == "big" else "big" for v in y[2:4]], v2=True)
        wait_caught_up(prom, server)
        # In-distribution rows, then drifted ones (larger sizes, only blue), over several scrapes.
        drifted = x.assign(size=x["size"] + 15, colour="blue")
        for frame, v2 in ((x, False), (drifted, True)):
            for i in range(0, 240, 4):
                send(client, frame.iloc[i : i + 4], y[i : i + 4], v2)
                if i % 40 == 0:
                    time.sleep(0.5)
    wait_caught_up(prom, server)
    # End the window at Prometheus' last scrape, so nothing is extrapolated forward.
    last = scraped_value(prom, f'timestamp(mlkube_model_info{{pod="{POD}"}})')
    assert last is not None
    want = direct(server)
    got = window_counts(prom, NAMESPACE, MODEL, art.sha256, WINDOW, at=last)

    assert got.model_sha256 == want.model_sha256 == art.sha256
    assert got.requests.keys() == want.requests.keys() == {"200"}
    assert got.latency.keys() == want.latency.keys()
    assert got.feature_bins.keys() == want.feature_bins.keys() == {"size", "colour"}
    for feature, bins in want.feature_bins.items():
        assert got.feature_bins[feature].keys() == bins.keys(), feature
    assert got.predictions.keys() == want.predictions.keys() == {"big", "small"}
    assert got.feedback.keys() == want.feedback.keys() == {"correct", "incorrect"}
    assert got.feature_reference == want.feature_reference
    assert got.prediction_reference == want.prediction_reference
    # The references the tests size themselves with, and the score histogram.
    assert got.prediction_score_reference == want.prediction_score_reference != {}
    assert got.feature_reference_rows == want.feature_reference_rows != {}
    assert got.prediction_reference_rows == want.prediction_reference_rows is not None
    assert got.reference_accuracy == want.reference_accuracy is not None
    assert got.prediction_scores.keys() == want.prediction_scores.keys()

    assert close(got.requests["200"], want.requests["200"]), (got.requests, want.requests)
    assert close(got.latency[math.inf], want.latency[math.inf])
    for feature, bins in want.feature_bins.items():
        for key, value in bins.items():
            assert close(got.feature_bins[feature][key], value), (feature, key, got.feature_bins, bins)
    for outcome, value in want.feedback.items():
        assert close(got.feedback[outcome], value), (got.feedback, want.feedback)

    now = datetime.now(UTC)
    verdicts = [analyse(c, Thresholds(), 50, now) for c in (got, want)]
    assert [v.verdict for v in verdicts] == [Verdict.DEGRADED, Verdict.DEGRADED]
    assert verdicts[0].values.input_drift_feature == verdicts[1].values.input_drift_feature
    assert [t.name for t in verdicts[0].values.input_drift if t.significant] == [
        t.name for t in verdicts[1].values.input_drift if t.significant
    ]
    assert verdicts[0].values.samples == pytest.approx(verdicts[1].values.samples, rel=0.05)
    # Evaluated now, as the operator does: increase() now also extrapolates from the last
    # scrape to the end of the window, by up to a scrape interval's share of the series'
    # sampled time (1 s of some 10 s here), so only the verdict has to be the same.
    latest = window_counts(prom, NAMESPACE, MODEL, art.sha256, WINDOW)
    assert math.isclose(latest.requests["200"], want.requests["200"], rel_tol=0.2)
    assert analyse(latest, Thresholds(), 50, now).verdict is Verdict.DEGRADED
    # Another digest (say, the previous model's) served nothing here.
    assert window_counts(prom, NAMESPACE, MODEL, "0" * 64, WINDOW) == Counts()
    assert window_counts(prom, "elsewhere", MODEL, art.sha256, WINDOW) == Counts()


# -- failures ------------------------------------------------------------------------------------------


def test_unreachable_prometheus_is_a_temporary_failure_naming_the_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with pytest.raises(TemporaryFailure, match=f"Cannot query Prometheus at {url}"):
        window_counts(url, NAMESPACE, MODEL, "a" * 64, WINDOW, timeout=2)


@pytest.fixture()
def stub() -> Iterator[tuple[str, list[tuple[int, Any]]]]:
    """A fake Prometheus that answers each query with the next (status, body) of a list."""
    answers: list[tuple[int, Any]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = answers.pop(0)
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *_: Any) -> None:
            pass

    httpd = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", answers
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (
            400,
            {"status": "error", "errorType": "bad_data", "error": "parse error"},
            "answered HTTP 400: parse error",
        ),
        (503, b"Service Unavailable", "answered HTTP 503: Service Unavailable"),
        (200, {"status": "error", "error": "query timed out"}, "answered status 'error': query timed out"),
        (200, b"<html>", "answered something that is not JSON"),
        (
            200,
            {"status": "success", "data": {"resultType": "matrix", "result": []}},
            "answered no instant vector",
        ),
    ],
)
def test_error_answers_are_temporary_failures_naming_the_url(
    stub: tuple[str, list[tuple[int, Any]]], status: int, body: Any, message: str
) -> None:
    url, answers = stub
    answers.append((status, body))
    with pytest.raises(TemporaryFailure, match=re.escape(f"Prometheus at {url} {message}")):
        window_counts(url, NAMESPACE, MODEL, "a" * 64, WINDOW)


def test_series_without_a_pod_label_are_refused(stub: tuple[str, list[tuple[int, Any]]]) -> None:
    url, answers = stub
    pods = [{"metric": {"namespace": NAMESPACE}, "value": [0, "1"]}]
    answers.append((200, {"status": "success", "data": {"resultType": "vector", "result": pods}}))
    with pytest.raises(TemporaryFailure, match="without a `pod` label"):
        window_counts(url, NAMESPACE, MODEL, "a" * 64, WINDOW)
