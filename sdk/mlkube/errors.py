"""The SDK's exceptions: a failed resource raises what its condition says, not an HTTP error.

A notebook user should see `QualityGateFailed: accuracy 0.71 < minimum 0.9` with the
condition's reason and message, and be able to `except mlkube.TrainingFailed`, instead
of a `kubernetes.client.ApiException` holding a JSON body. Every exception carries the
resource (`kind`, `name`, `namespace`) and the condition `reason` it was raised for.
"""

from __future__ import annotations


class MlkubeError(Exception):
    """Base of every SDK error: `reason` is the condition's (or the API's) CamelCase reason."""

    def __init__(
        self, message: str, *, reason: str = "", kind: str = "", name: str = "", namespace: str = ""
    ) -> None:
        self.message = message
        self.reason = reason
        self.kind = kind
        self.name = name
        self.namespace = namespace
        where = f"{kind}/{name}: " if kind and name else ""
        super().__init__(f"{where}{reason + ': ' if reason else ''}{message}")


class InvalidSpec(MlkubeError, ValueError):
    """The spec was refused: by the SDK's own models, the API server's schema or the operator."""


class NotFound(MlkubeError, LookupError):
    """The named resource (or its Job's pods, or its Service) does not exist."""


class DatasetNotReady(MlkubeError):
    """A Dataset failed validation or profiling, is missing, or its source is unavailable."""


class TrainingFailed(MlkubeError):
    """A TrainingRun failed (its Job failed, its search found no score, its data changed)."""


class QualityGateFailed(TrainingFailed):
    """A TrainingRun trained, but its metric missed the quality gate (`except TrainingFailed` catches it)."""


class ModelNotReady(MlkubeError):
    """A ModelDeployment has no model to serve: its TrainingRun is missing or failed."""


class WaitTimeout(MlkubeError, TimeoutError):
    """`.wait(timeout=...)` ran out of time; the message has the last reason seen."""


class DataTooLarge(MlkubeError, ValueError):
    """A table too large for a ConfigMap (see docs/sdk.md): use from_url, from_s3 or from_sql."""


class PredictionError(MlkubeError):
    """The model server answered an error (the reason is the HTTP status, the message its body)."""


class ApiError(MlkubeError):
    """Any other answer of the API server (the reason is Forbidden, Conflict, ApiError, ...)."""

    def __init__(self, message: str, *, status: int = 0, **kwargs: str) -> None:
        self.status = status
        super().__init__(message, **kwargs)
