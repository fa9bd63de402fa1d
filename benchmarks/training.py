"""Wall time from `kubectl apply` to Succeeded, next to the same fit in a plain script.

Brings up a dev cluster of its own (binaries cached) with the operator, then for the
iris data and a 100k-row synthetic CSV (served over HTTP on 127.0.0.1):
  * apply the Dataset and wait for Ready (profiling),
  * apply the TrainingRun and wait for Succeeded (training),
and runs the same load + split + fit + evaluate + joblib.dump in a fresh Python
process. Prints the times and mlkube's overhead against the target (3 s + 10 %).

    .venv/bin/python benchmarks/training.py [--rounds 3] [--keep]
"""

from __future__ import annotations

import argparse
import http.server
import json
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from mlkube_devcluster import cluster

ESTIMATORS = {
    "iris": (
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 100, "max_depth": 8, "random_state": 0},
    ),
    "synthetic-100k": (
        "sklearn.ensemble.RandomForestClassifier",
        {"n_estimators": 30, "max_depth": 10, "random_state": 0, "n_jobs": 1},
    ),
}

PLAIN = textwrap.dedent(
    """
    import sys, time, joblib, importlib, json, tempfile
    t0 = time.perf_counter()
    import pandas as pd
    from sklearn.model_selection import train_test_split
    from sklearn.metrics import accuracy_score
    source, target, cls, params = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
    if source == "iris":
        from sklearn.datasets import load_iris
        df = load_iris(as_frame=True).frame
    else:
        df = pd.read_csv(source)
    X, y = df.drop(columns=[target]), df[target]
    Xtr, Xte, ytr, yte = train_test_split(X, y, test_size=0.2, random_state=42, stratify=y)
    module, _, name = cls.rpartition(".")
    model = getattr(importlib.import_module(module), name)(**params).fit(Xtr, ytr)
    accuracy_score(yte, model.predict(Xte))
    joblib.dump(model, tempfile.mktemp(suffix=".joblib"))
    print(time.perf_counter() - t0)
    """
)


def synthetic_csv(path: Path, rows: int = 100_000, features: int = 10) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, features))
    y = (x[:, 0] + 0.5 * x[:, 1] - x[:, 2] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    header = ",".join(f"f{i}" for i in range(features)) + ",label\n"
    body = "\n".join(",".join(f"{v:.6f}" for v in row) + f",{label}" for row, label in zip(x, y, strict=True))
    path.write_text(header + body + "\n")


def kubectl(kubeconfig: Path, *args: str, stdin: str | None = None) -> str:
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kubeconfig), *args],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    ).stdout


def timed_apply(kubeconfig: Path, ns: str, doc: dict[str, Any], condition: str, timeout: int = 600) -> float:
    start = time.perf_counter()
    kubectl(kubeconfig, "-n", ns, "apply", "-f", "-", stdin=yaml.safe_dump(doc))
    kind = doc["kind"].lower()
    kubectl(
        kubeconfig,
        "-n",
        ns,
        "wait",
        f"--for=condition={condition}",
        f"{kind}/{doc['metadata']['name']}",
        f"--timeout={timeout}s",
    )
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--keep", action="store_true", help="leave the benchmark cluster running")
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="mlkube-bench-"))
    synthetic_csv(work / "synthetic.csv")
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(work))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}/synthetic.csv"
    state = work / "cluster"
    result = cluster.up(state, operator=True)
    kc = result.kubeconfig
    sources = {
        "iris": ({"builtin": "iris"}, "target", "iris"),
        "synthetic-100k": ({"url": url}, "label", str(work / "synthetic.csv")),
    }
    rows = []
    try:
        for key, (source, target, plain_source) in sources.items():
            cls, params = ESTIMATORS[key]
            profile_t, train_t, plain_t = [], [], []
            for r in range(args.rounds):
                ns = f"bench-{key}-{r}".replace("_", "-")
                kubectl(kc, "create", "namespace", ns)
                ds = {
                    "apiVersion": "mlkube.io/v1alpha1",
                    "kind": "Dataset",
                    "metadata": {"name": "d"},
                    "spec": {"source": source, "target": target},
                }
                tr = {
                    "apiVersion": "mlkube.io/v1alpha1",
                    "kind": "TrainingRun",
                    "metadata": {"name": "t"},
                    "spec": {
                        "datasetRef": {"name": "d"},
                        "estimator": {"className": cls, "params": params},
                        "metrics": ["accuracy"],
                    },
                }
                profile_t.append(timed_apply(kc, ns, ds, "Ready"))
                train_t.append(timed_apply(kc, ns, tr, "Succeeded"))
                start = time.perf_counter()
                subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        PLAIN,
                        plain_source,
                        target,
                        cls,
                        json.dumps(params),
                    ],
                    check=True,
                    capture_output=True,
                )
                plain_t.append(time.perf_counter() - start)
            p, t, f = statistics.median(profile_t), statistics.median(train_t), statistics.median(plain_t)
            rows.append((key, p, t, f))
    finally:
        server.shutdown()
        if not args.keep:
            cluster.down(state, purge=True)
    print(
        f"{'dataset':<16}{'profile (apply->Ready)':>24}{'train (apply->Succeeded)':>27}{'plain script':>15}{'overhead':>11}{'target':>9}"
    )
    for key, p, t, f in rows:
        overhead, budget = t - f, 3.0 + 0.10 * f
        print(
            f"{key:<16}{p:>23.2f}s{t:>26.2f}s{f:>14.2f}s{overhead:>10.2f}s{budget:>8.2f}s {'OK' if overhead <= budget else 'MISSED'}"
        )
    print(
        f"(medians of {args.rounds} rounds; plain script = fresh python: imports + load + split + fit + evaluate + dump)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
