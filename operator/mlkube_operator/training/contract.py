"""What the operator and the Job pods agree on, in one importable place.

The operator builds Jobs that call this CLI and reads their termination messages; the
model server reads the files they write. Keeping exit codes, reasons and the artifact
layout here (stdlib only, no pandas or scikit-learn) lets the operator import them
without the cost of the data stack, and keeps both sides spelling them the same.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Final

from .. import artifacts, constants

# Exit codes. The operator's Jobs carry a podFailurePolicy rule
# `onExitCodes: {operator: In, values: [EXIT_PERMANENT]}` -> FailJob, so a data or spec
# problem fails at once, while a crash or a flaky source (EXIT_RETRYABLE) is retried
# up to the Job's backoffLimit.
EXIT_OK: Final = 0
EXIT_RETRYABLE: Final = 1
EXIT_PERMANENT: Final = constants.EXIT_PERMANENT

# The kubelet keeps at most 4096 bytes of a container's termination message.
TERMINATION_MESSAGE_MAX_BYTES: Final = 4096
DEFAULT_TERMINATION_LOG: Final = constants.TERMINATION_LOG

DEFAULT_ALLOWED_PREFIXES: Final = ("sklearn.",)
DEFAULT_SOURCE_TIMEOUT_SECONDS: Final = 30.0

DATA_FILE: Final = "data.csv"
PROFILE_FILE: Final = "profile.json"
MODEL_FILE: Final = "model.joblib"
METADATA_FILE: Final = "metadata.json"

NUMERIC: Final = "numeric"
CATEGORICAL: Final = "categorical"
CLASSIFICATION: Final = "classification"
REGRESSION: Final = "regression"


class Reason(StrEnum):
    """`reason` of a failed termination message; the operator copies it into the condition."""

    # profile
    VALIDATION_FAILED = "ValidationFailed"
    SOURCE_UNAVAILABLE = "SourceUnavailable"
    PROFILE_FAILED = "ProfileFailed"
    # both
    INVALID_SPEC = "InvalidSpec"
    ARTIFACT_STORE_UNAVAILABLE = "ArtifactStoreUnavailable"
    # train
    DATASET_UNAVAILABLE = "DatasetUnavailable"
    DATASET_HASH_MISMATCH = "DatasetHashMismatch"
    INVALID_ESTIMATOR = "InvalidEstimator"
    INVALID_PARAMETERS = "InvalidParameters"
    QUALITY_GATE_FAILED = "QualityGateFailed"
    TRAINING_FAILED = "TrainingFailed"
    # search trial: this trial's own parameters failed (the search goes on)
    TRIAL_FAILED = "TrialFailed"


def dataset_dir(artifact_root: Path, namespace: str, name: str, content_hash: str) -> Path:
    """Content-addressed (see mlkube_operator.artifacts), so a re-profile never overwrites."""
    return artifact_root / artifacts.dataset_dir(namespace, name, content_hash)


def model_dir(artifact_root: Path, namespace: str, name: str, uid: str, generation: int) -> Path:
    """Per uid and generation, so neither a re-created run nor a spec change clobbers a served model."""
    return artifact_root / artifacts.model_dir(namespace, name, uid, generation)
