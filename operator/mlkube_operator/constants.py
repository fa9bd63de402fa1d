"""Names shared by every part of the operator.

They live in one module so that a label, a condition reason or an annotation is
spelt the same by the planner that writes it, the handler that reads it and the
test that checks it.
"""

from __future__ import annotations

from typing import Final

GROUP: Final = "mlkube.io"
VERSION: Final = "v1alpha1"
API_VERSION: Final = f"{GROUP}/{VERSION}"
CATEGORY: Final = "mlkube"

# The images of one release, built from the Dockerfile's three targets: the operator runs
# in the first, profile/training Jobs in the trainer image, predictors in the server image.
IMAGE_REGISTRY: Final = "ghcr.io/mlkube"
IMAGE_TAG: Final = "0.1.0"
OPERATOR_IMAGE: Final = f"{IMAGE_REGISTRY}/mlkube-operator:{IMAGE_TAG}"
TRAINER_IMAGE: Final = f"{IMAGE_REGISTRY}/mlkube-trainer:{IMAGE_TAG}"
SERVER_IMAGE: Final = f"{IMAGE_REGISTRY}/mlkube-server:{IMAGE_TAG}"

PART_OF: Final = "mlkube"
MANAGED_BY: Final = "mlkube-operator"

LABEL_NAME: Final = "app.kubernetes.io/name"
LABEL_INSTANCE: Final = "app.kubernetes.io/instance"
LABEL_COMPONENT: Final = "app.kubernetes.io/component"
LABEL_PART_OF: Final = "app.kubernetes.io/part-of"
LABEL_MANAGED_BY: Final = "app.kubernetes.io/managed-by"

LABEL_DATASET: Final = "mlkube.io/dataset"
LABEL_TRAINING_RUN: Final = "mlkube.io/trainingrun"
LABEL_GENERATION: Final = "mlkube.io/generation"
JOB_NAME_LABEL: Final = "batch.kubernetes.io/job-name"
ANNOTATION_DATASET_HASH: Final = "mlkube.io/dataset-hash"
ANNOTATION_DATASET_TARGET: Final = "mlkube.io/dataset-target"

COMPONENT_PROFILE: Final = "dataset-profile"
COMPONENT_TRAINING: Final = "training"

# Condition types.
READY: Final = "Ready"
SUCCEEDED: Final = "Succeeded"
PROGRESSING: Final = "Progressing"
DEGRADED: Final = "Degraded"

# Whether the last reconcile's API calls all succeeded (see errors.py); False names the
# failed call and the server's answer, and clears (True) once the call succeeds.
RECONCILED: Final = "Reconciled"

# The field manager of every server-side apply: the operator owns exactly the fields it sets.
FIELD_MANAGER: Final = "mlkube-operator"

# Condition reasons (CamelCase, stable: users alert on them).
REASON_INVALID_SPEC: Final = "InvalidSpec"
REASON_PROFILING: Final = "Profiling"
REASON_PROFILED: Final = "Profiled"
REASON_VALIDATION_FAILED: Final = "ValidationFailed"
REASON_SOURCE_UNAVAILABLE: Final = "SourceUnavailable"
REASON_PROFILING_FAILED: Final = "ProfilingFailed"
REASON_DATASET_NOT_READY: Final = "DatasetNotReady"
REASON_TRAINING: Final = "Training"
REASON_TRAINED: Final = "Trained"
REASON_QUALITY_GATE_FAILED: Final = "QualityGateFailed"
REASON_TRAINING_FAILED: Final = "TrainingFailed"
# A Job's pod waits for an image its node cannot pull (a missing or mistyped image).
REASON_IMAGE_UNAVAILABLE: Final = "ImageUnavailable"
REASON_SEARCHING: Final = "Searching"
REASON_REFITTING: Final = "Refitting"
REASON_SEARCH_FAILED: Final = "SearchFailed"

# Exit code with which the Job entrypoints report a permanent failure (bad data, bad
# spec): the Job's podFailurePolicy fails the Job at once instead of retrying.
EXIT_PERMANENT: Final = 3

# Where the artifact volume is mounted in Jobs and serving pods.
ARTIFACT_MOUNT: Final = "/var/lib/mlkube/artifacts"
CONFIGMAP_MOUNT: Final = "/var/run/mlkube/source"
TERMINATION_LOG: Final = "/dev/termination-log"

LABEL_MODEL_DEPLOYMENT: Final = "mlkube.io/modeldeployment"
LABEL_MODEL_SHA: Final = "mlkube.io/model-sha256"
LABEL_TRACK: Final = "mlkube.io/track"
COMPONENT_PREDICTOR: Final = "predictor"
ANNOTATION_MODEL_SHA: Final = "mlkube.io/model-sha256"
SERVING_PORT_NAME: Final = "http"
# A predictor asked to stop keeps serving this long first: its removal from the Service's
# endpoints reaches kube-proxy (and any ingress) asynchronously, and until it has, new
# connections still arrive. Without it, every rollout and rollback refuses some requests.
PREDICTOR_DRAIN_SECONDS: Final = 5

REASON_MODEL_NOT_READY: Final = "ModelNotReady"
REASON_ROLLING_OUT: Final = "RollingOut"
REASON_ROLLOUT_COMPLETE: Final = "RolloutComplete"
REASON_SERVING: Final = "Serving"
REASON_UNSUPPORTED: Final = "Unsupported"

REASON_HEALTHY: Final = "Healthy"
REASON_THRESHOLDS_EXCEEDED: Final = "ThresholdsExceeded"
REASON_INSUFFICIENT_DATA: Final = "InsufficientData"
REASON_METRICS_UNAVAILABLE: Final = "MetricsUnavailable"
REASON_MONITORING_DISABLED: Final = "MonitoringDisabled"
REASON_ROLLED_BACK: Final = "RolledBack"
REASON_ROLLBACK_IMPOSSIBLE: Final = "RollbackImpossible"
REASON_RECOVERED: Final = "Recovered"
REASON_RETRAINING: Final = "Retraining"
REASON_CANARY: Final = "Canary"
REASON_CANARY_PROMOTED: Final = "CanaryPromoted"
REASON_CANARY_ABORTED: Final = "CanaryAborted"
REASON_CANARY_INCONCLUSIVE: Final = "CanaryInconclusive"
REASON_CANARY_SUPERSEDED: Final = "CanarySuperseded"
REASON_MODEL_DEGRADED: Final = "ModelDegraded"
REASON_MODEL_REJECTED: Final = "ModelRejected"
REASON_RETRAIN_SKIPPED: Final = "RetrainSkipped"
REASON_RETRAIN_INEFFECTIVE: Final = "RetrainIneffective"
REASON_RETRAIN_FAILED: Final = "RetrainFailed"
REASON_RETRAIN_SUPERSEDED: Final = "RetrainSuperseded"
REASON_MANUAL_ACTION: Final = "ManualAction"
REASON_MANUAL_ACTION_IGNORED: Final = "ManualActionIgnored"
REASON_ABORTED_BY_USER: Final = "AbortedByUser"

# A trainingRunRef to another namespace (ModelGrant, see docs/operator.md).
ACCEPTED: Final = "Accepted"  # the summary condition of a ModelGrant
REASON_GRANT_ACCEPTED: Final = "GrantAccepted"
REASON_REFERENCE_GRANTED: Final = "ReferenceGranted"
REASON_REFERENCE_NOT_PERMITTED: Final = "ReferenceNotPermitted"
REASON_ARTIFACT_NOT_REACHABLE: Final = "ArtifactNotReachable"

# Manual control of a ModelDeployment without a spec edit (see docs/operator.md):
# `mlkube.io/action: promote|abort|unpin` acts once per `mlkube.io/action-id`.
ANNOTATION_ACTION: Final = "mlkube.io/action"
ANNOTATION_ACTION_ID: Final = "mlkube.io/action-id"
MANUAL_ACTIONS: Final = ("promote", "abort", "unpin")

REASON_RECONCILE_SUCCEEDED: Final = "ReconcileSucceeded"
REASON_FORBIDDEN: Final = "Forbidden"  # 401/403: the operator's RBAC lacks a rule
REASON_REJECTED: Final = "Rejected"  # 400/422: the API server rejected the request (e.g. a child's field)
REASON_API_UNREACHABLE: Final = "ApiUnreachable"  # no answer: connection refused, timeout
REASON_API_ERROR: Final = "ApiError"  # any other answer: 5xx, 429, unexpected 4xx
REASON_INTERNAL_ERROR: Final = "InternalError"  # a bug in the operator (the log has the traceback)
# A Secret (or a key of it) that a Job or predictor would read is missing: nothing is created
# until it exists (reconcile/secrets.py); the object is checked again with backoff.
REASON_SECRET_NOT_FOUND: Final = "SecretNotFound"
REASON_SECRET_KEY_NOT_FOUND: Final = "SecretKeyNotFound"

# Environment of the Job and serving pods for object storage and SQL credentials. The
# values come from Secrets (env valueFrom.secretKeyRef); the entrypoints read them and
# never print them. Secret keys of an S3 credentials Secret follow the AWS convention.
SECRET_KEY_ACCESS_KEY_ID: Final = "AWS_ACCESS_KEY_ID"
SECRET_KEY_SECRET_ACCESS_KEY: Final = "AWS_SECRET_ACCESS_KEY"
ENV_SOURCE_ACCESS_KEY_ID: Final = "MLKUBE_SOURCE_AWS_ACCESS_KEY_ID"
ENV_SOURCE_SECRET_ACCESS_KEY: Final = "MLKUBE_SOURCE_AWS_SECRET_ACCESS_KEY"
ENV_SOURCE_SQL_URL: Final = "MLKUBE_SOURCE_SQL_URL"
ENV_ARTIFACT_STORE: Final = "MLKUBE_ARTIFACT_STORE"
ENV_ARTIFACT_ENDPOINT: Final = "MLKUBE_ARTIFACT_ENDPOINT"
ENV_ARTIFACT_REGION: Final = "MLKUBE_ARTIFACT_REGION"
ENV_ARTIFACT_ACCESS_KEY_ID: Final = "MLKUBE_ARTIFACT_AWS_ACCESS_KEY_ID"
ENV_ARTIFACT_SECRET_ACCESS_KEY: Final = "MLKUBE_ARTIFACT_AWS_SECRET_ACCESS_KEY"

# Dataset refresh: re-reading a source without a spec edit (docs/data-sources.md).
# `mlkube.io/refresh: <token>` asks for one re-read per distinct token.
ANNOTATION_REFRESH: Final = "mlkube.io/refresh"
REASON_REFRESHING: Final = "Refreshing"
REASON_REFRESH_FAILED: Final = "RefreshFailed"
REASON_DATA_CHANGED: Final = "DataChanged"
REASON_RETRYING: Final = "RetryingSource"
# TrainingRun: its model was trained on a Dataset version that is no longer current.
STALE: Final = "Stale"
REASON_DATASET_CHANGED: Final = "DatasetChanged"
REASON_DATASET_CURRENT: Final = "DatasetCurrent"
REASON_FOLLOWING_DATASET: Final = "FollowingDataset"

# Per-namespace artifact store: annotations on a Namespace override the operator's
# MLKUBE_ARTIFACT_* settings for the objects in it (settings.Settings.for_namespace).
# On the Namespace, not on a ConfigMap in it: who may edit a Namespace (usually the
# platform team) decides where a namespace's artifacts go.
ANNOTATION_ARTIFACT_STORE: Final = "mlkube.io/artifact-store"  # s3://bucket/prefix, or "pvc"
ANNOTATION_ARTIFACT_ENDPOINT: Final = "mlkube.io/artifact-endpoint"
ANNOTATION_ARTIFACT_REGION: Final = "mlkube.io/artifact-region"
ANNOTATION_ARTIFACT_CREDENTIALS_SECRET: Final = "mlkube.io/artifact-credentials-secret"
ARTIFACT_STORE_PVC: Final = "pvc"
