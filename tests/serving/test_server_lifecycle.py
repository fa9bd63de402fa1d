"""Start-up refusals, configuration from the environment, and graceful shutdown, on real processes."""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import numpy as np
import pytest

from .conftest import REPO, Artifact, ServerProc, free_port, start_server


def _unready(server: ServerProc, reason: str) -> dict[str, str]:
    server.wait_live()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        r = httpx.get(f"{server.url}/v2/health/ready")
        body = r.json()
        if body.get("reason") != "Loading":
            assert r.status_code == 503
            assert body["ready"] is False
            assert body["reason"] == reason, body
            return dict(body)
        time.sleep(0.05)
    raise AssertionError("still loading")


@pytest.mark.parametrize(
    ("sha", "reason"),
    [("0" * 64, "DigestMismatch"), (None, "DigestMissing"), ("not-a-digest", "DigestInvalid")],
)
def test_refuses_unverified_model(
    artifacts: dict[str, Artifact], tmp_path: Path, sha: str | None, reason: str
) -> None:
    server = start_server("iris", artifacts["iris"], tmp_path, sha256=sha)
    try:
        body = _unready(server, reason)
        assert body["error"]
        # Stays up, says why everywhere, never predicts.
        assert httpx.get(f"{server.url}/v2/health/live").status_code == 200
        r = httpx.post(f"{server.url}/v1/models/iris:predict", json={"instances": [[1, 2, 3, 4]]})
        assert r.status_code == 503 and reason in r.json()["error"]
        assert httpx.get(f"{server.url}/v2/models/iris/ready").status_code == 503
        assert httpx.get(f"{server.url}/v2/models/iris").status_code == 503
        assert 'mlkube_model_ready{model="iris"} 0.0' in httpx.get(f"{server.url}/metrics").text
    finally:
        assert server.stop() == 0
    records = [json.loads(line) for line in server.logs().splitlines() if line.strip()]
    refusal = [r for r in records if r.get("reason") == reason]
    assert refusal and refusal[0]["level"] == "error" and refusal[0]["message"].startswith("model not loaded")


def test_digest_checked_before_unpickling(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    """A tampered file must not be unpickled: the pickle here would create a marker file when loaded."""
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (Path.touch, (str(marker),))  # type: ignore[return-value]

    model = tmp_path / "model.joblib"
    model.write_bytes(pickle.dumps(Evil()))
    art = Artifact("evil", model, "1" * 64, None, None, None, None)
    server = start_server("evil", art, tmp_path)
    try:
        _unready(server, "DigestMismatch")
    finally:
        server.stop()
    assert not marker.exists()


def test_missing_model_file_and_bad_profile(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    missing = Artifact("m", tmp_path / "nope" / "model.joblib", "0" * 64, None, None, None, None)
    s1 = start_server("m", missing, tmp_path)
    bad_profile = tmp_path / "profile.json"
    bad_profile.write_text('{"features": [{"name": "x", "kind": "numeric", "binEdges": [3, 1]}]}')
    art = artifacts["iris"]
    s2 = start_server("iris", Artifact("iris", art.path, art.sha256, bad_profile, None, None, None), tmp_path)
    try:
        assert "does not exist" in _unready(s1, "ModelNotFound")["error"]
        assert "binEdges must not decrease" in _unready(s2, "ProfileInvalid")["error"]
    finally:
        s1.stop()
        s2.stop()


def test_settings_from_environment(artifacts: dict[str, Artifact], tmp_path: Path) -> None:
    art = artifacts["lr"]
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MLKUBE_")},
        "PYTHONPATH": str(REPO / "serving"),
        "MLKUBE_MODEL_URI": f"file://{art.path}",
        "MLKUBE_MODEL_SHA256": art.sha256,
        "MLKUBE_MODEL_NAME": "from-env",
        "MLKUBE_HOST": "127.0.0.1",
        "MLKUBE_PORT": str(port),
        "MLKUBE_ACCESS_LOG": "true",
    }
    log_path = tmp_path / "env.log"
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlkube_serving"],
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
        env=env,
    )
    server = ServerProc("from-env", port, proc, log_path)
    try:
        server.wait_ready()
        r = httpx.post(f"{server.url}/v1/models/from-env:predict", json={"instances": [[5.1, 3.5, 1.4, 0.2]]})
        assert r.status_code == 200
    finally:
        assert server.stop() == 0
    access = [json.loads(line) for line in server.logs().splitlines() if line.strip()]
    assert any(r.get("path") == "/v1/models/from-env:predict" and r.get("status") == 200 for r in access)


def test_graceful_shutdown_finishes_in_flight_requests(
    artifacts: dict[str, Artifact], tmp_path: Path
) -> None:
    art = artifacts["iris"]
    server = start_server("iris", art, tmp_path)
    server.wait_ready()
    rows = np.tile(art.x, (150, 1))  # 22k rows: long enough to be in flight at SIGTERM
    expected = art.model.predict(rows[:150]).tolist()

    body = json.dumps({"instances": rows.tolist()}).encode()
    headers = {"content-type": "application/json"}

    def call() -> tuple[int, list[int]] | None:
        try:
            r = httpx.post(f"{server.url}/v1/models/iris:predict", content=body, headers=headers, timeout=60)
        except httpx.TransportError:
            return None  # not accepted before the listener closed: refused, never half-answered
        return r.status_code, r.json()["predictions"][:150]

    def in_flight() -> int:
        text = httpx.get(f"{server.url}/metrics", timeout=30).text
        line = next(x for x in text.splitlines() if x.startswith("mlkube_requests_in_flight{"))
        return int(float(line.rsplit(" ", 1)[1]))

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        futures = [pool.submit(call) for _ in range(4)]
        deadline = time.monotonic() + 30
        while (received := in_flight()) == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        if received == 0:
            server.stop()
            raise AssertionError("no request reached the server")
        server.proc.send_signal(signal.SIGTERM)
        results = [f.result(timeout=60) for f in futures]
    answered = [r for r in results if r is not None]
    # Every request the server had received when SIGTERM came was answered, and answered right.
    assert len(answered) >= received, (received, results)
    assert all(status == 200 and preds == expected for status, preds in answered)
    assert server.proc.wait(timeout=30) == 0
    records = [json.loads(line) for line in server.logs().splitlines() if line.strip()]
    assert any(r.get("message") == "stopped serving" for r in records)
