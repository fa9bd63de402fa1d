"""examples/notebooks/quickstart.ipynb runs top to bottom in a real Jupyter kernel against the dev cluster;
then the CLI verbs (mlkube runs, compare, predict, logs) work on what it made.

nbclient starts an ipykernel with $KUBECONFIG and $MLKUBE_NAMESPACE pointing at the test's
namespace; every cell must succeed, and the outputs must hold what the notebook promises:
the accuracy table, a plotted figure, three predictions of the three classes and a scored label.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

pytestmark = pytest.mark.cluster

NOTEBOOK = Path(__file__).resolve().parents[2] / "examples" / "notebooks" / "quickstart.ipynb"


def _text(cell: Any) -> str:
    out = []
    for o in cell.get("outputs", []):
        if "text" in o:
            out.append(o["text"])
        for key in ("text/plain", "text/html"):
            if key in o.get("data", {}):
                out.append(o["data"][key])
    return "\n".join(out)


def test_quickstart_notebook_runs(dev_cluster: Any, namespace: str, mlkube_operator: Any) -> None:
    nb = nbformat.read(NOTEBOOK, as_version=4)
    env = {"KUBECONFIG": str(dev_cluster.kubeconfig), "MLKUBE_NAMESPACE": namespace}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the kernel inherits the environment
    try:
        NotebookClient(nb, timeout=900, kernel_name="python3").execute()
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    code = [c for c in nb.cells if c.cell_type == "code"]
    by_source = {c.source.splitlines()[0]: c for c in code}
    table = _text(by_source["table = mlkube.compare([rf, lr])"])
    assert "metric.accuracy" in table and "sklearn.ensemble.RandomForestClassifier" in table
    assert _text(by_source['rows = df.drop(columns="target").iloc[[0, 50, 100]]']).strip() == "[0, 1, 2]"
    plotted = by_source['ax = mlkube.plot([rf, lr], metric="accuracy")']
    assert any("image/png" in o.get("data", {}) for o in plotted.get("outputs", [])), "no figure was drawn"
    feedback = _text(by_source["md.feedback(pred.id, [0, 1, 2])"])
    assert json.loads(feedback.replace("'", '"')) == {"accepted": 1, "unknownIds": [], "scoredRows": 3}
    assert "<b>ModelDeployment</b>" in _text(
        by_source['best = rf if rf.metrics["accuracy"] >= lr.metrics["accuracy"] else lr']
    )
    assert "kind: TrainingRun" in _text(by_source["print(best.to_yaml())"])

    # The CLI verbs on the notebook's resources.
    where = ("-n", namespace, "--kubeconfig", str(dev_cluster.kubeconfig))
    listing = _mlkube("runs", *where).splitlines()
    assert listing[0].split()[:5] == ["RUN", "ESTIMATOR", "DATASET", "SUCCEEDED", "REASON"]
    names = sorted(line.split()[0] for line in listing[1:])
    assert len(names) == 2 and {line.split()[1] for line in listing[1:]} == {
        "RandomForestClassifier",
        "LogisticRegression",
    }
    compared = _mlkube("compare", *names, *where)
    assert "metric.accuracy" in compared.splitlines()[0] and len(compared.splitlines()) == 3
    rows = "sepal length (cm),sepal width (cm),petal length (cm),petal width (cm)\n5.1,3.5,1.4,0.2\n6.3,3.3,6.0,2.5\n"
    assert _mlkube("predict", "iris", "-f", "-", *where, stdin=rows).split() == ["0", "2"]
    logs = _mlkube("logs", names[0], *where)
    assert logs.startswith("==> ") and '"sha256"' in logs


def _mlkube(*args: str, stdin: str | None = None) -> str:
    exe = str(Path(sys.executable).with_name("mlkube"))
    out = subprocess.run([exe, *args], input=stdin, capture_output=True, text=True, timeout=120, check=True)
    return out.stdout
