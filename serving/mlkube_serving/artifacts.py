"""Reading training artifacts without trusting them.

``model.joblib`` is a pickle: loading it runs arbitrary code.  The only thing that makes
loading acceptable is that the bytes are exactly the bytes the training Job produced,
which the operator vouches for with their sha256.  So the file is read into memory once,
the digest is checked over *those* bytes, and the same bytes are unpickled: there is no
window in which the file could be swapped between the check and the load.  Without an
expected digest nothing is loaded at all.

In a multi-node cluster the artifacts live in S3-compatible object storage
(``s3://bucket/key`` URIs): the model is downloaded into memory with pyarrow's S3
client and verified the same way, so a pod may land on any node.  The store's
endpoint, region and credentials come from ``MLKUBE_ARTIFACT_ENDPOINT``,
``MLKUBE_ARTIFACT_REGION``, ``MLKUBE_ARTIFACT_AWS_ACCESS_KEY_ID`` and
``MLKUBE_ARTIFACT_AWS_SECRET_ACCESS_KEY`` (set from a Secret by the operator), like an
AWS SDK reads its own environment; they never appear in a message.

``metadata.json`` and ``profile.json`` are plain JSON and are validated with pydantic, so
a malformed one is a clear refusal reason instead of an ``AttributeError`` later.
"""

from __future__ import annotations

import hashlib
import hmac
import io
import itertools
import math
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
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


_S3_URI_RE = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)$")


@dataclass(frozen=True)
class S3Object:
    """An object in S3-compatible storage, reached with the MLKUBE_ARTIFACT_* environment."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"

    @property
    def parent(self) -> S3Object:
        return S3Object(self.bucket, self.key.rsplit("/", 1)[0] if "/" in self.key else "")

    def __truediv__(self, name: str) -> S3Object:
        return S3Object(self.bucket, f"{self.key.rstrip('/')}/{name}" if self.key else name)

    def __str__(self) -> str:
        return self.uri


Location = Path | S3Object


def _s3_filesystem(env: Mapping[str, str] | None = None) -> Any:
    from pyarrow import fs as pafs

    env = os.environ if env is None else env
    kwargs: dict[str, Any] = {
        "region": env.get("MLKUBE_ARTIFACT_REGION") or "us-east-1",
        "connect_timeout": 5,
        "request_timeout": 60,
        "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=3),
    }
    endpoint = env.get("MLKUBE_ARTIFACT_ENDPOINT")
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs.update(endpoint_override=parsed.netloc, scheme=parsed.scheme or "https")
        kwargs["force_virtual_addressing"] = False
    key, secret = (
        env.get("MLKUBE_ARTIFACT_AWS_ACCESS_KEY_ID"),
        env.get("MLKUBE_ARTIFACT_AWS_SECRET_ACCESS_KEY"),
    )
    if key and secret:
        kwargs.update(access_key=key, secret_key=secret)
    else:
        kwargs["anonymous"] = True
    return pafs.S3FileSystem(**kwargs)


def read_location(location: Location) -> bytes:
    """The bytes at a path or an S3 object; FileNotFoundError or OSError (without credentials) otherwise."""
    if isinstance(location, Path):
        return location.read_bytes()
    from pyarrow import fs as pafs

    filesystem = _s3_filesystem()
    path = f"{location.bucket}/{location.key}"
    try:
        if filesystem.get_file_info(path).type != pafs.FileType.File:
            raise FileNotFoundError(location.uri)
        with filesystem.open_input_stream(path) as stream:
            data: bytes = stream.read()
    except FileNotFoundError:
        raise
    except OSError as exc:
        text = str(exc)
        for name in ("MLKUBE_ARTIFACT_AWS_SECRET_ACCESS_KEY", "MLKUBE_ARTIFACT_AWS_ACCESS_KEY_ID"):
            value = os.environ.get(name)
            if value:
                text = text.replace(value, "***")
        raise OSError(text.strip().splitlines()[0] if text.strip() else "S3 error") from None
    return data


def resolve_location(uri: str) -> Location:
    """A file path, or an S3 object for ``s3://bucket/key``."""
    if uri.startswith("s3://"):
        match = _S3_URI_RE.match(uri)
        if match is None:
            raise LoadRefused("UnsupportedUri", f"{uri!r} is not an s3://bucket/key URI")
        return S3Object(match["bucket"], match["key"])
    return resolve_uri(uri)


def resolve_uri(uri: str) -> Path:
    """``file:///a/b``, ``file://localhost/a/b`` or a plain path -> Path; other schemes are refused."""
    if "://" not in uri:
        return Path(uri)
    parsed = urlparse(uri)
    if parsed.scheme != "file":
        raise LoadRefused(
            "UnsupportedUri", f"unsupported URI scheme {parsed.scheme!r} in {uri!r}; use file:// or s3://"
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


def model_path(uri: str | None) -> Location:
    if not uri:
        raise LoadRefused("NoModelUri", "no model URI was given (--model-uri / MLKUBE_MODEL_URI)")
    if uri.startswith("s3://") and uri.endswith("/"):
        uri += MODEL_FILE
    path = resolve_location(uri)
    if isinstance(path, Path) and path.is_dir():
        path = path / MODEL_FILE
    return path


def read_verified(path: Location, expected_sha256: str) -> bytes:
    """The file's bytes, only if their sha256 is ``expected_sha256`` (already normalised)."""
    try:
        data = read_location(path)
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


def _read_json(path: Location, what: str) -> Any:
    try:
        return orjson.loads(read_location(path))
    except FileNotFoundError:
        raise
    except (OSError, orjson.JSONDecodeError) as exc:
        raise LoadRefused(f"{what}Invalid", f"cannot read {what.lower()} {str(path)!r}: {exc}") from None


def load_metadata(model_file: Location) -> ModelMetadata | None:
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
    path = resolve_location(uri)
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
