"""Benchmark models and artifacts: the same files every server under test loads.

The issue fixes the models (a RandomForest of 100 trees of depth 10 on 20 features, and a
LogisticRegression); they are trained on synthetic data with a fixed seed so that every
run, and every server in a run, serves byte-identical models.  The reference profile has
ten quantile bins per feature, like the dataset profiler writes, so mlkube's per-feature
drift histograms are part of what is measured.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

N_FEATURES = 20
MODELS = ("rf", "lr")


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


def build(workdir: Path) -> dict[str, dict[str, Any]]:
    """Train (or reuse) both models under workdir/<name>/; returns name -> {dir, path, sha256, sample}."""
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
        if not path.exists():
            est: Any
            if key == "rf":
                est = RandomForestClassifier(n_estimators=100, max_depth=10, random_state=0)
            else:
                est = LogisticRegression(max_iter=2000)
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
            "profile": d / "profile.json",
            "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "rows": np.asarray(x[:512], dtype=np.float64),
        }
    return out
