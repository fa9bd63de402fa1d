"""Benchmark models and artifacts: the same files every server under test loads.

The issue fixes the models (a RandomForest of 100 trees of depth 10 on 20 features, and a
LogisticRegression); they are trained on synthetic data with a fixed seed so that every
run, and every server in a run, serves byte-identical models.  The reference profile has
ten quantile bins per feature, like the dataset profiler writes, so mlkube's per-feature
drift histograms are part of what is measured.

``rf-pipeline`` is the same RandomForest as mlkube's training Job makes it, from the same
data: the real ``python -m mlkube_operator.training profile`` and ``train`` commands on a
CSV of it, so the model is ``Pipeline([ColumnTransformer(imputer + scaler), forest])``
fitted on a DataFrame, with the profiler's profile.json and the Job's metadata.json.  The
bare app gets it wrapped in ``FrameModel`` (the line such an app needs: a DataFrame with
the feature names); MLServer's scikit-learn runtime would hand it a plain array, which the
pipeline refuses, so MLServer is left out of that model.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
N_FEATURES = 20
MODELS = ("rf", "lr", "rf-pipeline")
RF_PARAMS = {"n_estimators": 100, "max_depth": 10, "random_state": 0}


class FrameModel:
    """A pipeline fitted on a DataFrame, called the way a bare app must call it."""

    def __init__(self, model: Any, columns: list[str]) -> None:
        self.model = model
        self.columns = columns

    def predict(self, x: Any) -> Any:
        import pandas as pd

        return self.model.predict(pd.DataFrame(x, columns=self.columns))


def reference_predict(info: dict[str, Any], rows: Any) -> list[Any]:
    """The model's own predictions, to check every server against."""
    import joblib

    model = joblib.load(info["bare_path"])
    return list(model.predict(rows).tolist())


def _profile(x: Any, y: Any, names: list[str]) -> dict[str, Any]:
    import numpy as np

    features = []
    for j, name in enumerate(names):
        col = x[:, j]
        edges = np.quantile(col, np.linspace(0, 1, 11))
        counts, _ = np.histogram(col, edges)
        features.append(
            {
                "name": name,
                "kind": "numeric",
                "binEdges": edges.tolist(),
                "fractions": (counts / counts.sum()).tolist(),
                "mean": float(col.mean()),
                "std": float(col.std()),
                "missing": 0,
            }
        )
    levels, counts = np.unique(y, return_counts=True)
    return {
        "contentHash": "benchmark",
        "rows": len(x),
        "columns": N_FEATURES + 1,
        "target": "label",
        "features": features,
        "targetProfile": {
            "kind": "categorical",
            "levels": {str(int(lv)): float(c / counts.sum()) for lv, c in zip(levels, counts, strict=True)},
        },
    }


def _train_like_mlkube(d: Path, x: Any, y: Any, names: list[str]) -> Path:
    """Profile and train with mlkube's own Job commands; returns the model.joblib they wrote."""
    store = d / "store"
    store.mkdir(parents=True, exist_ok=True)
    lines = [",".join([*names, "label"])]
    lines += [
        ",".join([*(repr(float(v)) for v in row), str(int(label))]) for row, label in zip(x, y, strict=True)
    ]
    (store / "data.csv").write_text("\n".join(lines) + "\n")
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator")}

    def job(*argv: str) -> dict[str, Any]:
        log = store / "termination-log"
        cmd = [sys.executable, "-m", "mlkube_operator.training", *argv, "--namespace", "bench"]
        cmd += ["--artifact-root", str(store), "--termination-log", str(log)]
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        result: dict[str, Any] = json.loads(log.read_text())
        return result

    ds = job(
        "profile",
        "--spec-json",
        json.dumps({"source": {"path": "data.csv"}, "target": "label"}),
        "--name",
        "data",
    )
    spec = {
        "datasetRef": {"name": "data"},
        "estimator": {"className": "sklearn.ensemble.RandomForestClassifier", "params": RF_PARAMS},
    }
    run = job(
        *("train", "--spec-json", json.dumps(spec), "--name", "rf", "--uid", "bench"),
        *("--data-uri", ds["dataUri"], "--dataset-hash", ds["contentHash"], "--target", "label"),
    )
    (d / "profile.json").write_bytes(Path(ds["profileUri"].removeprefix("file://")).read_bytes())
    return Path(run["model"]["uri"].removeprefix("file://"))


def build(workdir: Path) -> dict[str, dict[str, Any]]:
    """Train (or reuse) the models under workdir/<name>/; returns name -> {dir, path, sha256, rows, ...}."""
    import joblib
    import numpy as np
    import sklearn
    from sklearn.datasets import make_classification
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    x, y = make_classification(
        n_samples=4000, n_features=N_FEATURES, n_informative=12, n_classes=3, random_state=7
    )
    names = [f"f{i}" for i in range(N_FEATURES)]
    out: dict[str, dict[str, Any]] = {}
    for key in MODELS:
        d = workdir / key
        d.mkdir(parents=True, exist_ok=True)
        path = d / "model.joblib"
        bare_path = path
        if key == "rf-pipeline":
            trained = sorted((d / "store" / "models").rglob("model.joblib")) if (d / "store").exists() else []
            path = trained[0] if trained else _train_like_mlkube(d, x, y, names)
            bare_path = d / "bare-model.joblib"
            if not bare_path.exists():
                joblib.dump(FrameModel(joblib.load(path), names), bare_path)
        elif not path.exists():
            est: Any = (
                RandomForestClassifier(**RF_PARAMS) if key == "rf" else LogisticRegression(max_iter=2000)
            )
            est.fit(x, y)
            joblib.dump(est, path)
            (d / "metadata.json").write_text(
                json.dumps(
                    {
                        "estimator": f"{type(est).__module__}.{type(est).__name__}",
                        "task": "classification",
                        "featureNames": names,
                        "classes": [0, 1, 2],
                        "sklearnVersion": sklearn.__version__,
                        "datasetHash": "benchmark",
                        "metrics": {},
                        "params": {},
                    }
                )
            )
            (d / "profile.json").write_text(json.dumps(_profile(x, y, names)))
        out[key] = {
            "dir": d,
            "path": path,
            "bare_path": bare_path,
            "mlserver": key != "rf-pipeline",
            "profile": d / "profile.json",
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": np.asarray(x[:512], dtype=np.float64),
        }
    return out
