"""mlkube's Python SDK: from a DataFrame to a served, monitored model without writing YAML.

    import mlkube
    mlkube.connect(namespace="team-a")                 # kubeconfig, or in-cluster
    ds = mlkube.Dataset.from_dataframe(df, name="iris", target="species").wait()
    run = mlkube.train(ds, RandomForestClassifier(n_estimators=50)).wait()
    md = mlkube.deploy(run, name="iris").wait()
    md.predict(df.drop(columns="species").head(3))

Every call writes an ordinary mlkube resource (`kubectl get mlkube` shows it;
`.to_yaml()` gives the manifest to keep in Git), built with the operator's own API
models. See docs/sdk.md.
"""

from __future__ import annotations

from .errors import (
    ApiError,
    DatasetNotReady,
    DataTooLarge,
    InvalidSpec,
    MlkubeError,
    ModelNotReady,
    NotFound,
    PredictionError,
    QualityGateFailed,
    TrainingFailed,
    WaitTimeout,
)
from .handles import Dataset, Deployment, Predictions, Run, compare, deploy, plot, runs, train
from .session import Session, connect

__all__ = [
    "ApiError",
    "DataTooLarge",
    "Dataset",
    "DatasetNotReady",
    "Deployment",
    "InvalidSpec",
    "MlkubeError",
    "ModelNotReady",
    "NotFound",
    "PredictionError",
    "Predictions",
    "QualityGateFailed",
    "Run",
    "Session",
    "TrainingFailed",
    "WaitTimeout",
    "compare",
    "connect",
    "deploy",
    "plot",
    "runs",
    "train",
]
