"""The mlkube API (group mlkube.io, version v1alpha1) as pydantic models.

Everything else (CRD schemas, handlers, planners, tests) is derived from these
classes; change the API here and regenerate crds/ with `python -m mlkube_operator.crdgen`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import BaseModel

from .common import Condition, ConditionStatus
from .dataset import DatasetSpec, DatasetStatus
from .grant import ModelGrantSpec, ModelGrantStatus
from .modeldeployment import ModelDeploymentSpec, ModelDeploymentStatus
from .trainingrun import TrainingRunSpec, TrainingRunStatus


@dataclass(frozen=True)
class PrinterColumn:
    name: str
    json_path: str
    type: str = "string"
    description: str = ""
    priority: int = 0


@dataclass(frozen=True)
class Kind:
    """One custom resource kind: its names, models and how kubectl shows it."""

    kind: str
    plural: str
    singular: str
    short_names: tuple[str, ...]
    spec: type[BaseModel]
    status: type[BaseModel]
    summary_condition: str
    columns: tuple[PrinterColumn, ...]
    description: str


def _cond(type_: str, field: str) -> str:
    return f'.status.conditions[?(@.type=="{type_}")].{field}'


DATASET = Kind(
    kind="Dataset",
    plural="datasets",
    singular="dataset",
    short_names=("mlds",),
    spec=DatasetSpec,
    status=DatasetStatus,
    summary_condition="Ready",
    columns=(
        PrinterColumn("Ready", _cond("Ready", "status")),
        PrinterColumn("Reason", _cond("Ready", "reason")),
        PrinterColumn("Rows", ".status.rows", "integer"),
        PrinterColumn("Columns", ".status.columns", "integer"),
        PrinterColumn("Hash", ".status.contentHash", priority=1),
        PrinterColumn("Profiled", ".status.profiledTime", "date", priority=1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    description="Tabular data, validated and profiled by mlkube.",
)
TRAINING_RUN = Kind(
    kind="TrainingRun",
    plural="trainingruns",
    singular="trainingrun",
    short_names=("mltr",),
    spec=TrainingRunSpec,
    status=TrainingRunStatus,
    summary_condition="Succeeded",
    columns=(
        PrinterColumn("Succeeded", _cond("Succeeded", "status")),
        PrinterColumn("Reason", _cond("Succeeded", "reason")),
        PrinterColumn("Dataset", ".spec.datasetRef.name"),
        PrinterColumn("Estimator", ".spec.estimator.className", priority=1),
        PrinterColumn("Accuracy", ".status.accuracy", "number"),
        PrinterColumn("Stale", _cond("Stale", "status")),
        PrinterColumn("R2", ".status.r2", "number", priority=1),
        PrinterColumn("Model", ".status.model.sha256", priority=1),
        PrinterColumn("Trials", ".status.search.succeeded", "integer", "Search trials that scored", 1),
        PrinterColumn("Best", ".status.search.bestScore", "number", "Best search trial's score", 1),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    description="One scikit-learn training run on a Dataset, executed as a Job.",
)
MODEL_DEPLOYMENT = Kind(
    kind="ModelDeployment",
    plural="modeldeployments",
    singular="modeldeployment",
    short_names=("mlmd",),
    spec=ModelDeploymentSpec,
    status=ModelDeploymentStatus,
    summary_condition="Ready",
    columns=(
        PrinterColumn("Ready", _cond("Ready", "status")),
        PrinterColumn("State", ".status.stateSummary"),
        PrinterColumn("Degraded", _cond("Degraded", "status")),
        PrinterColumn("Model", ".status.currentModel.trainingRun"),
        PrinterColumn("SHA256", ".status.currentModel.shortSha256"),
        PrinterColumn("Replicas", ".status.readyReplicas", "integer"),
        PrinterColumn("Verdict", ".status.lastAnalysis.verdict"),
        PrinterColumn("Reason", _cond("Ready", "reason"), priority=1),
        PrinterColumn(
            "Grant",
            ".status.reference.grant",
            description="The ModelGrant permitting a TrainingRun of another namespace",
            priority=1,
        ),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    description="A trained model served by mlkube's model server, monitored for degradation.",
)
MODEL_GRANT = Kind(
    kind="ModelGrant",
    plural="modelgrants",
    singular="modelgrant",
    short_names=("mlgrant",),
    spec=ModelGrantSpec,
    status=ModelGrantStatus,
    summary_condition="Accepted",
    columns=(
        PrinterColumn("Accepted", _cond("Accepted", "status")),
        PrinterColumn(
            "Grants", ".status.summary", description="Which namespaces may serve which TrainingRuns"
        ),
        PrinterColumn("Age", ".metadata.creationTimestamp", "date"),
    ),
    description="Lets ModelDeployments of other namespaces serve the models of this namespace's TrainingRuns.",
)
KINDS: tuple[Kind, ...] = (DATASET, TRAINING_RUN, MODEL_DEPLOYMENT, MODEL_GRANT)

__all__ = [
    "DATASET",
    "KINDS",
    "MODEL_DEPLOYMENT",
    "MODEL_GRANT",
    "TRAINING_RUN",
    "Condition",
    "ConditionStatus",
    "DatasetSpec",
    "DatasetStatus",
    "Kind",
    "ModelDeploymentSpec",
    "ModelDeploymentStatus",
    "ModelGrantSpec",
    "ModelGrantStatus",
    "PrinterColumn",
    "TrainingRunSpec",
    "TrainingRunStatus",
]
