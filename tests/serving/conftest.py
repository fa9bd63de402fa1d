"""Fixtures for the model server's tests: small real models on disk, and real server processes.

The artifacts are made the way the training Job and the dataset profiler make them
(model.joblib + metadata.json with the model's reference predictions, profile.json with
quantile bin edges), including a
pipeline with a categorical column, so the server is tested against what it will serve.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]


@dataclass
class Artifact:
    name: str
    path: Path
    sha256: str
    profile: Path | None
    x: Any  # rows the model was trained on (ndarray or DataFrame)
    y: Any
    model: Any


def _profile_numeric(col: np.ndarray[Any, Any]) -> dict[str, Any]:
    edges = np.unique(np.quantile(col, np.linspace(0, 1, 11), method="inverted_cdf"))
    if len(edges) == 1:
        edges = np.array([edges[0], edges[0]])
    counts, _ = np.histogram(col, edges)
    return {
        "kind": "numeric",
        "binEdges": edges.tolist(),
        "fractions": (counts / counts.sum()).tolist(),
        "mean": float(col.mean()),
        "std": float(col.std()),
        "missing": 0,
    }


def _write(
    root: Path, name: str, model: Any, meta: dict[str, Any], profile: dict[str, Any] | None, x: Any, y: Any
) -> Artifact:
    import joblib

    from mlkube_operator.training.reference import reference_predictions

    d = root / name
    d.mkdir(parents=True)
    joblib.dump(model, d / "model.joblib")
    # The model's predictions on its rows, as the training Job records them on its held-out rows.
    meta = {**meta, "referencePredictions": reference_predictions(model, x, y, meta["task"])}
    (d / "metadata.json").write_text(json.dumps(meta))
    ppath = None
    if profile is not None:
        ppath = d / "profile.json"
        ppath.write_text(json.dumps(profile))
    sha = hashlib.sha256((d / "model.joblib").read_bytes()).hexdigest()
    return Artifact(name, d / "model.joblib", sha, ppath, x, y, model)


def build_artifacts(root: Path) -> dict[str, Artifact]:
    import pandas as pd
    import sklearn
    from sklearn.compose import ColumnTransformer
    from sklearn.datasets import load_iris, make_regression
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LinearRegression, LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    out: dict[str, Artifact] = {}
    iris = load_iris()
    x, y = iris.data, iris.target
    names = ["sepal_length", "sepal_width", "petal_length", "petal_width"]
    base = {"sklearnVersion": sklearn.__version__, "datasetHash": "d" * 64, "metrics": {}, "params": {}}
    profile = {
        "contentHash": "d" * 64,
        "rows": len(x),
        "columns": 5,
        "target": "species",
        "features": [{"name": n, **_profile_numeric(x[:, j])} for j, n in enumerate(names)],
        "targetProfile": {
            "kind": "categorical",
            "levels": {"0": 1 / 3, "1": 1 / 3, "2": 1 / 3},
            "missing": 0,
        },
    }
    rf = RandomForestClassifier(n_estimators=10, max_depth=4, random_state=0).fit(x, y)
    meta = {
        **base,
        "estimator": "sklearn.ensemble.RandomForestClassifier",
        "task": "classification",
        "featureNames": names,
        "classes": [0, 1, 2],
    }
    out["iris"] = _write(root, "iris", rf, meta, profile, x, y)

    lr = LogisticRegression(max_iter=500).fit(x, y)
    meta = {**meta, "estimator": "sklearn.linear_model.LogisticRegression"}
    out["lr"] = _write(root, "lr", lr, meta, profile, x, y)

    xr, yr = make_regression(n_samples=300, n_features=3, noise=1.0, random_state=0)
    reg = LinearRegression().fit(xr, yr)
    rnames = ["a", "b", "c"]
    rprofile = {
        "contentHash": "r" * 64,
        "rows": 300,
        "columns": 4,
        "target": "y",
        "features": [{"name": n, **_profile_numeric(xr[:, j])} for j, n in enumerate(rnames)],
        "targetProfile": _profile_numeric(yr),
    }
    rmeta = {
        **base,
        "estimator": "sklearn.linear_model.LinearRegression",
        "task": "regression",
        "featureNames": rnames,
        "classes": None,
    }
    out["reg"] = _write(root, "reg", reg, rmeta, rprofile, xr, yr)

    # Like mlkube's training pipeline: DataFrame in, imputer+scaler for numbers, one-hot for categories.
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "size": rng.normal(10, 3, 400),
            "colour": rng.choice(["red", "green", "blue"], 400).astype(object),
        }
    )
    target = np.where((frame["size"] > 10) & (frame["colour"] != "blue"), "big", "small")
    pipe = Pipeline(
        [
            (
                "preprocess",
                ColumnTransformer(
                    [
                        (
                            "numeric",
                            Pipeline(
                                [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
                            ),
                            ["size"],
                        ),
                        (
                            "categorical",
                            OneHotEncoder(handle_unknown="ignore", sparse_output=False),
                            ["colour"],
                        ),
                    ],
                    remainder="drop",
                    sparse_threshold=0.0,
                ),
            ),
            ("estimator", LogisticRegression(max_iter=500)),
        ]
    ).fit(frame, target)
    pprofile = {
        "contentHash": "p" * 64,
        "rows": 400,
        "columns": 3,
        "target": "label",
        "features": [
            {"name": "size", **_profile_numeric(frame["size"].to_numpy())},
            {
                "name": "colour",
                "kind": "categorical",
                "levels": {"blue": 0.34, "green": 0.33, "red": 0.33},
                "missing": 0,
            },
        ],
        "targetProfile": {"kind": "categorical", "levels": {"big": 0.4, "small": 0.6}, "missing": 0},
    }
    pmeta = {
        **base,
        "estimator": "sklearn.linear_model.LogisticRegression",
        "task": "classification",
        "featureNames": ["size", "colour"],
        "schema": [{"name": "size", "dtype": "numeric"}, {"name": "colour", "dtype": "categorical"}],
        "classes": ["big", "small"],
        "trainingRun": {"namespace": "ns", "name": "pipe-run", "uid": "u-1", "generation": 3},
    }
    out["pipe"] = _write(root, "pipe", pipe, pmeta, pprofile, frame, target)
    return out


@pytest.fixture(scope="session")
def artifacts(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Artifact]:
    return build_artifacts(tmp_path_factory.mktemp("serving-artifacts"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class ServerProc:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    log_path: Path
    args: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def logs(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_live(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server {self.name} exited: {self.logs()}")
            try:
                if httpx.get(f"{self.url}/v2/health/live", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server {self.name} not live: {self.logs()}")

    def wait_ready(self, timeout: float = 120.0) -> None:  # a loaded 2-core CI box is slow to unpickle
        self.wait_live(timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                r = httpx.get(f"{self.url}/v2/health/ready", timeout=2)
            except httpx.TimeoutException:  # busy unpickling on a loaded machine: ask again
                continue
            if r.status_code == 200:
                return
            if r.json().get("reason") not in ("Loading",):
                raise RuntimeError(f"server {self.name} will not be ready: {r.text}")
            time.sleep(0.05)
        raise RuntimeError(f"server {self.name} not ready: {self.logs()}")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return int(self.proc.returncode)


def start_server(
    name: str,
    art: Artifact | None,
    tmp: Path,
    *extra: str,
    sha256: str | None = "auto",
    env: dict[str, str] | None = None,
) -> ServerProc:
    port = free_port()
    args = ["--name", name, "--host", "127.0.0.1", "--port", str(port)]
    if art is not None:
        args += ["--model-uri", f"file://{art.path}"]
        if sha256 == "auto":
            args += ["--model-sha256", art.sha256]
        elif sha256 is not None:
            args += ["--model-sha256", sha256]
        if art.profile is not None:
            args += ["--reference-profile", str(art.profile)]
    args += list(extra)
    log_path = tmp / f"server-{name}-{port}.log"
    full_env = {**os.environ, "PYTHONPATH": str(REPO / "serving"), **(env or {})}
    for key in [k for k in full_env if k.startswith("MLKUBE_")]:
        if env is None or key not in env:
            del full_env[key]
    proc = subprocess.Popen(
        [sys.executable, "-m", "mlkube_serving", *args],
        stdout=subprocess.DEVNULL,
        stderr=log_path.open("wb"),
        env=full_env,
        cwd=str(REPO),
    )
    return ServerProc(name, port, proc, log_path, args)


@pytest.fixture(scope="session")
def servers(
    artifacts: dict[str, Artifact], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, ServerProc]]:
    """One server per model, started together (each takes a second or so to import sklearn)."""
    tmp = tmp_path_factory.mktemp("serving-logs")
    procs = {
        "iris": start_server("iris", artifacts["iris"], tmp),
        "lr": start_server("lr", artifacts["lr"], tmp, "--max-body-bytes", "4096"),
        "reg": start_server("reg", artifacts["reg"], tmp),
        "pipe": start_server("pipe", artifacts["pipe"], tmp),
    }
    try:
        for p in procs.values():
            p.wait_ready()
        yield procs
    finally:
        for p in procs.values():
            p.stop()
