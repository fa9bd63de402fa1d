"""Reading training artifacts without trusting them.

``model.joblib`` is a pickle: loading it runs arbitrary code.  The only thing that makes
loading acceptable is that the bytes are exactly the bytes the training Job produced,
which the operator vouches for with their sha256.  So the file is read into memory once,
the digest is checked over *those* bytes, and the same bytes are unpickled: there is no
window in which the file could be swapped between the check and the load.  Without an
expected digest nothing is loaded at all.

``metadata.json`` and ``profile.json`` are plain JSON and are validated with pydantic, so
a malformed one is a clear refusal reason instead of an ``AttributeError`` later.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import math
import re
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlparse

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic.alias_generators import to_camel

MODEL_FILE = "model.joblib"
METADATA_FILE = "metadata.json"
_SHA256_RE = re.compile(r"^(?:sha256:)?([0-9a-fA-F]{64})$")


class LoadRefused(Exception):
    """The model (or its companions) cannot be served; ``reason`` is a CamelCase code for readiness."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


class _Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="allow")


class ModelMetadata(_Camel):
    """``metadata.json`` written beside ``model.joblib`` by the training Job."""

    estimator: str | None = None
    task: Literal["classification", "regression"] | None = None
    feature_names: list[str] | None = None
    # [{"name": ..., "dtype": "numeric" | "categorical"}]; "schema" shadows a BaseModel attribute.
    schema_: list[dict[str, Any]] | None = Field(default=None, alias="schema")
    classes: list[Any] | None = None
    sklearn_version: str | None = None
    dataset_hash: str | None = None
    metrics: dict[str, Any] = Field(default_factory=dict)
    params: dict[str, Any] = Field(default_factory=dict)
    version: str | None = None
    reference_predictions: ReferencePredictions | None = None
    # {"namespace", "name", "uid", "generation"} of the TrainingRun that made the model.
    training_run: dict[str, Any] | None = None


def _check_edges(edges: list[float] | None) -> list[float] | None:
    if edges is None:
        return None
    if len(edges) < 2:
        raise ValueError("binEdges needs at least two edges")
    if any(not math.isfinite(e) for e in edges):
        raise ValueError("binEdges must be finite numbers")
    if any(b < a for a, b in itertools.pairwise(edges)):
        raise ValueError("binEdges must not decrease")
    return edges


class ColumnProfile(_Camel):
    """One column of the reference profile (a feature, or the target)."""

    name: str = ""
    kind: Literal["numeric", "categorical"]
    bin_edges: list[float] | None = None
    fractions: list[float] | None = None
    mean: float | None = None
    std: float | None = None
    missing: float = 0
    levels: dict[str, float] | None = None

    _edges = field_validator("bin_edges")(_check_edges)

    @model_validator(mode="after")
    def _fractions_match_bins(self) -> ColumnProfile:
        if (
            self.bin_edges is not None
            and self.fractions is not None
            and len(self.fractions) != len(self.bin_edges) - 1
        ):
            raise ValueError(
                f"{len(self.bin_edges)} binEdges need {len(self.bin_edges) - 1} fractions, "
                f"got {len(self.fractions)}"
            )
        return self


class ReferencePredictions(_Camel):
    """The model's own predictions on its held-out rows, recorded by the training Job.

    Prediction drift is judged against these (not against the training labels): what
    the model predicted on data like its training data.  ``scores`` is the binned
    distribution of ``scoreKind``: the positive class' probability (binary), the
    largest probability (multi-class) or the predicted value (regression).
    """

    rows: int = Field(ge=1)
    accuracy: float | None = Field(default=None, ge=0.0, le=1.0)
    classes: dict[str, float] | None = None
    score_kind: Literal["positiveProbability", "maxProbability", "prediction"] | None = None
    scores: ColumnProfile | None = None


ModelMetadata.model_rebuild()


class ReferenceProfile(_Camel):
    """``profile.json`` written by the dataset profiler."""

    content_hash: str | None = None
    rows: int | None = None
    columns: int | None = None
    target: str | None = None
    features: list[ColumnProfile] = Field(default_factory=list)
    target_profile: ColumnProfile | None = None

    def feature(self, name: str) -> ColumnProfile | None:
        for feature in self.features:
            if feature.name == name:
                return feature
        return None


def resolve_uri(uri: str) -> Path:
    """``file:///a/b``, ``file://localhost/a/b`` or a plain path -> Path; other schemes are refused."""
    if "://" not in uri:
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise LoadRefused(
            "UnsupportedUri", f"unsupported URI scheme {parsed.scheme!r} in {uri!r}; use file://"
        )
    if parsed.netloc not in ("", "localhost"):
        raise LoadRefused("UnsupportedUri", f"file URI with a remote host {parsed.netloc!r}: {uri!r}")
    return Path(unquote(parsed.path))


def parse_sha256(value: str | None) -> str:
    """The expected digest as 64 lowercase hex characters, or a refusal."""
    if value is None or not value.strip():
        raise LoadRefused(
            "DigestMissing",
            "no expected sha256 was given (--model-sha256 / MLKUBE_MODEL_SHA256); "
            "refusing to unpickle an unverified model",
        )
    match = _SHA256_RE.match(value.strip())
    if match is None:
        raise LoadRefused("DigestInvalid", f"expected sha256 {value!r} is not 64 hexadecimal characters")
    return match.group(1).lower()


def model_path(uri: str | None) -> Path:
    if not uri:
        raise LoadRefused("NoModelUri", "no model URI was given (--model-uri / MLKUBE_MODEL_URI)")
    path = resolve_uri(uri)
    if path.is_dir():
        path = path / MODEL_FILE
    return path


def read_verified(path: Path, expected_sha256: str) -> bytes:
    """The file's bytes, only if their sha256 is ``expected_sha256`` (already normalised)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise LoadRefused("ModelNotFound", f"model file {str(path)!r} does not exist") from None
    except OSError as exc:
        raise LoadRefused("ModelUnreadable", f"cannot read model file {str(path)!r}: {exc}") from None
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(actual, expected_sha256):
        raise LoadRefused(
            "DigestMismatch",
            f"sha256 of {str(path)!r} is {actual}, expected {expected_sha256}; refusing to load it",
        )
    return data


def unpickle(data: bytes) -> Any:
    """joblib.load over bytes that were already verified."""
    import joblib

    return joblib.load(io.BytesIO(data))


def _read_json(path: Path, what: str) -> Any:
    try:
        return orjson.loads(path.read_bytes())
    except FileNotFoundError:
        raise
    except (OSError, orjson.JSONDecodeError) as exc:
        raise LoadRefused(f"{what}Invalid", f"cannot read {what.lower()} {str(path)!r}: {exc}") from None


def load_metadata(model_file: Path) -> ModelMetadata | None:
    """``metadata.json`` beside the model; None when there is none (the model alone is then described)."""
    path = model_file.parent / METADATA_FILE
    try:
        raw = _read_json(path, "Metadata")
    except FileNotFoundError:
        return None
    try:
        return ModelMetadata.model_validate(raw)
    except ValidationError as exc:
        raise LoadRefused("MetadataInvalid", f"{str(path)!r} is not valid model metadata: {exc}") from None


def load_profile(uri: str) -> ReferenceProfile:
    path = resolve_uri(uri)
    try:
        raw = _read_json(path, "Profile")
    except FileNotFoundError:
        raise LoadRefused("ProfileNotFound", f"reference profile {str(path)!r} does not exist") from None
    try:
        return ReferenceProfile.model_validate(raw)
    except ValidationError as exc:
        raise LoadRefused(
            "ProfileInvalid", f"{str(path)!r} is not a valid reference profile: {exc}"
        ) from None
