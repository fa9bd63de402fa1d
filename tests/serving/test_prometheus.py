"""A real Prometheus scrapes a real model server and evaluates mlkube's recording rules.

The promtool unit tests feed hand-written series; this checks that the series the
server actually exports carry the names and labels those rules expect.
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from .conftest import REPO, Artifact, ServerProc, free_port, start_server


def _prometheus_binary() -> str:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail(
            "prometheus not found: install Debian's `prometheus` package (.ci/run and `make test` do)"
        )
    return found


@contextlib.contextmanager
def prometheus_scraping(
    server: ServerProc, tmp_path: Path, labels: dict[str, str], rules: list[dict[str, Any]] | None = None
) -> Iterator[str]:
    """A real Prometheus scraping `server` every second (target `labels` added); yields its URL."""
    with prometheus_scraping_targets([(server.port, labels)], tmp_path, rules) as url:
        server.wait_ready()
        yield url


@contextlib.contextmanager
def prometheus_scraping_targets(
    targets: list[tuple[int, dict[str, str]]], tmp_path: Path, rules: list[dict[str, Any]] | None = None
) -> Iterator[str]:
    """A real Prometheus scraping 127.0.0.1:port of each target every second, adding its
    labels (as a PodMonitor adds namespace and pod); yields its URL."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "scrape_configs": [
            {
                "job_name": "mlkube",
                "static_configs": [
                    {"targets": [f"127.0.0.1:{port}"], "labels": labels} for port, labels in targets
                ],
            }
        ],
    }
    if rules is not None:
        (tmp_path / "rules.yml").write_text(yaml.safe_dump({"groups": rules}))
        config["rule_files"] = [str(tmp_path / "rules.yml")]
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    with (tmp_path / "prometheus.log").open("wb") as log:
        prom = subprocess.Popen(
            [
                _prometheus_binary(),
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        prom.terminate()
        prom.wait(timeout=20)


@pytest.fixture()
def scraped(artifacts: dict[str, Artifact], tmp_path: Path) -> Iterator[tuple[ServerProc, str]]:
    server = start_server("iris", artifacts["iris"], tmp_path)
    rule = yaml.safe_load((REPO / "manifests" / "monitoring" / "prometheusrule.yaml").read_text())
    groups = rule["spec"]["groups"]
    for group in groups:
        group["interval"] = "1s"  # evaluate fast enough for a test
    try:
        with prometheus_scraping(server, tmp_path, {"namespace": "test", "pod": "iris-0"}, groups) as url:
            yield server, url
    finally:
        server.stop()


def query(prom: str, expr: str) -> list[dict[str, Any]]:
    r = httpx.get(f"{prom}/api/v1/query", params={"query": expr}, timeout=5)
    r.raise_for_status()
    result: list[dict[str, Any]] = r.json()["data"]["result"]
    return result


def wait_query(prom: str, expr: str, timeout: float = 45) -> list[dict[str, Any]]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = query(prom, expr)
        except httpx.HTTPError:
            result = []
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"Prometheus never returned data for {expr!r} within {timeout:.0f}s")


def test_recording_rules_work_on_the_servers_own_series(
    scraped: tuple[ServerProc, str], artifacts: dict[str, Artifact]
) -> None:
    server, prom = scraped
    x, y = artifacts["iris"].x, artifacts["iris"].y
    deadline = time.monotonic() + 40
    ids = []
    with httpx.Client(base_url=server.url, timeout=5) as client:
        # Traffic over several scrapes: predictions with ids, some bad requests, feedback.
        while time.monotonic() < deadline:
            for i in range(0, 150, 10):
                r = client.post("/v1/models/iris:predict", json={"instances": x[i : i + 2].tolist()})
                assert r.status_code == 200
                ids.append((r.json()["id"], y[i : i + 2].tolist()))
            assert client.post("/v1/models/iris:predict", json={"instances": [[1, 2]]}).status_code == 400
            feedback = [{"id": rid, "label": labels} for rid, labels in ids]
            assert client.post("/v2/models/iris/feedback", json={"feedback": feedback}).status_code == 200
            ids.clear()
            rate = query(prom, 'mlkube:requests:rate5m{model="iris"}')
            if (
                rate
                and float(rate[0]["value"][1]) > 0
                and query(prom, 'mlkube:feedback_accuracy:ratio_rate1h{model="iris"}')
            ):
                break
            time.sleep(0.5)

    rate = wait_query(prom, 'mlkube:requests:rate5m{namespace="test",model="iris"}')
    assert float(rate[0]["value"][1]) > 0
    errors = wait_query(prom, 'mlkube:request_errors:ratio_rate5m{namespace="test",model="iris"}')
    assert float(errors[0]["value"][1]) == 0.0  # 4xx are the client's errors, not the model's
    p99 = wait_query(prom, 'mlkube:request_duration_seconds:p99_5m{namespace="test",model="iris"}')
    assert 0 < float(p99[0]["value"][1]) < 1
    accuracy = wait_query(prom, 'mlkube:feedback_accuracy:ratio_rate1h{namespace="test",model="iris"}')
    assert float(accuracy[0]["value"][1]) > 0.9  # a forest on its own training rows
    info = wait_query(prom, 'mlkube_model_info{model="iris"}')
    assert info[0]["metric"]["sha256"] == artifacts["iris"].sha256
    bins = wait_query(prom, 'sum(mlkube_feature_bin_total{model="iris"})')
    assert float(bins[0]["value"][1]) > 0
    assert query(prom, 'ALERTS{alertname="MlkubeModelNotReady"}') == []
