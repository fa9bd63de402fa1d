"""The Dataset resource: where tabular data lives, what it must look like, what it was.

A Dataset is profiled once per generation by a Job; its status carries the content
hash that every TrainingRun trained on it pins, so lineage survives the source
changing underneath (a URL serving new bytes gives a new hash, not a silent change).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Self

from pydantic import Field, StringConstraints, ValidationInfo, field_validator, model_validator

from .common import (
    ApiModel,
    Conditions,
    ConfigMapKeyReference,
    LocalObjectReference,
    SecretKeyReference,
    StatusModel,
)

ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class BuiltinDataset(StrEnum):
    """Datasets bundled with scikit-learn: no network needed."""

    IRIS = "iris"
    WINE = "wine"
    BREAST_CANCER = "breast_cancer"
    DIABETES = "diabetes"
    DIGITS = "digits"


class DataFormat(StrEnum):
    CSV = "csv"
    PARQUET = "parquet"


S3Uri = Annotated[
    str,
    StringConstraints(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^\s]*)?$", max_length=2048),
]
HttpEndpoint = Annotated[str, StringConstraints(pattern=r"^https?://[^\s/]+/?$", max_length=512)]


class S3Source(ApiModel):
    """A file or a directory (partitioned or not) in S3-compatible object storage."""

    uri: S3Uri = Field(
        description="s3://bucket/key of one file, or s3://bucket/prefix/ of a directory of files."
    )
    format: DataFormat = Field(default=DataFormat.PARQUET, description="csv or parquet.")
    endpoint: HttpEndpoint | None = Field(
        default=None, description="Endpoint URL of an S3-compatible store; AWS S3 when unset."
    )
    region: Annotated[str, StringConstraints(pattern=r"^[a-z0-9-]{1,64}$")] = Field(
        default="us-east-1", description="Region of the bucket."
    )
    credentials_secret: LocalObjectReference | None = Field(
        default=None,
        description="Secret with keys AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY; anonymous access when unset.",
    )


class SqlSource(ApiModel):
    """The result of one read-only query against PostgreSQL."""

    query: Annotated[str, StringConstraints(min_length=1, max_length=65536)] = Field(
        description="A SELECT (or WITH ... SELECT) statement, run in a read-only transaction."
    )
    connection_secret: SecretKeyReference = Field(
        description="Secret key holding a postgresql:// connection URL (with its password)."
    )


class DatasetSource(ApiModel):
    """Exactly one of builtin, url, path, configMap, s3 or sql."""

    builtin: BuiltinDataset | None = Field(default=None, description="A dataset bundled with scikit-learn.")
    url: Annotated[str, StringConstraints(pattern=r"^https?://[^\s]+$", max_length=2048)] | None = Field(
        default=None, description="An http(s) URL serving CSV with a header row."
    )
    path: Annotated[str, StringConstraints(pattern=r"^[^\s]+$", max_length=1024)] | None = Field(
        default=None, description="A CSV file on the artifact volume, relative to its root."
    )
    config_map: ConfigMapKeyReference | None = Field(
        default=None, description="A ConfigMap key holding CSV text."
    )
    s3: S3Source | None = Field(default=None, description="CSV or Parquet in S3-compatible object storage.")
    sql: SqlSource | None = Field(default=None, description="The result of a PostgreSQL query.")

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = [n for n in SOURCE_KINDS if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "exactly one of builtin, url, path, configMap, s3, sql must be set"
                + (f" (got {', '.join(chosen)})" if chosen else " (got none)")
            )
        if self.path is not None and (self.path.startswith("/") or ".." in self.path.split("/")):
            raise ValueError("path must be relative to the artifact volume and must not contain '..'")
        return self

    @property
    def refreshable(self) -> bool:
        """Sources whose content can change without a spec edit."""
        return self.url is not None or self.s3 is not None or self.sql is not None


SOURCE_KINDS = ("builtin", "url", "path", "config_map", "s3", "sql")


class ValidationRules(ApiModel):
    """Checks the profile Job applies before a Dataset becomes Ready."""

    min_rows: int = Field(default=1, ge=1, description="Fewest rows accepted.")
    required_columns: list[ColumnName] = Field(default_factory=list, description="Columns that must exist.")
    # 0.5, not 0: training imputes missing values (median for numbers, a category of its
    # own for levels), so a few gaps are normal data; a column mostly missing is a broken
    # export. 1 turns the check off, 0 demands complete data.
    max_missing_fraction: float = Field(
        default=0.5,
        ge=0.0,
        le=1.0,
        description=(
            "Largest fraction of missing values allowed in any used column (features and target). "
            "Default 0.5: training imputes missing values, so only a mostly-empty column fails; "
            "0 demands complete data, 1 turns the check off."
        ),
    )


class ProfileOptions(ApiModel):
    bins: int = Field(default=10, ge=2, le=100, description="Quantile bins per numeric feature.")


class RefreshPolicy(ApiModel):
    """Re-reading the source without a spec edit (url, s3 and sql sources)."""

    interval_seconds: int | None = Field(
        default=None,
        ge=60,
        le=30 * 24 * 3600,
        description="Re-read the source this long after the last read; never when unset. "
        "A one-shot re-read is the annotation mlkube.io/refresh: <any new value>.",
    )


class DatasetSpec(ApiModel):
    source: DatasetSource = Field(description="Where the data lives.")
    refresh: RefreshPolicy | None = Field(default=None, description="When to re-read the source.")
    target: ColumnName = Field(description="The column to predict.")
    features: list[ColumnName] | None = Field(
        default=None, description="Feature columns; all columns but the target when omitted."
    )
    validation: ValidationRules = Field(default_factory=ValidationRules)
    profile: ProfileOptions = Field(default_factory=ProfileOptions)

    @model_validator(mode="after")
    def _refresh_needs_a_changing_source(self) -> Self:
        if (
            self.refresh is not None
            and self.refresh.interval_seconds is not None
            and not self.source.refreshable
        ):
            raise ValueError(
                "refresh.intervalSeconds applies to url, s3 and sql sources only "
                "(a builtin, path or configMap source changes only with a spec edit)"
            )
        return self

    @field_validator("features")
    @classmethod
    def _target_not_a_feature(cls, features: list[str] | None, info: ValidationInfo) -> list[str] | None:
        if features is not None:
            target = info.data.get("target")
            if target in features:
                raise ValueError(f"must not include the target column {target!r}")
            if len(set(features)) != len(features):
                raise ValueError("must not repeat a column")
        return features


class ColumnSchema(StatusModel):
    name: str
    dtype: str = Field(description="numeric or categorical.")


class DataVersion(StatusModel):
    """One content hash the source has had, and when it was first and last read."""

    content_hash: str
    rows: int | None = None
    first_seen_time: datetime | None = None
    last_seen_time: datetime | None = None


class RefreshError(StatusModel):
    reason: str
    message: str = ""
    time: datetime | None = None


class DatasetStatus(StatusModel):
    observed_generation: int | None = None
    conditions: Conditions
    rows: int | None = Field(default=None, description="Rows in the profiled data.")
    columns: int | None = Field(default=None, description="Columns in the profiled data.")
    content_hash: str | None = Field(default=None, description="sha256 of the canonical CSV serialisation.")
    profile_uri: str | None = Field(default=None, description="Where profile.json (reference profile) lives.")
    data_uri: str | None = Field(default=None, description="The canonical CSV snapshot training reads.")
    target: str | None = None
    features: list[str] | None = None
    schema_: list[ColumnSchema] | None = Field(default=None, alias="schema")
    job_name: str | None = Field(default=None, description="The profile Job of the current read.")
    profiled_time: datetime | None = Field(
        default=None, description="When the source was last read successfully."
    )
    read: int = Field(
        default=0, description="Reads of the source in the observed generation (0 = the first)."
    )
    refreshing: bool = Field(default=False, description="A re-read is running; the data above stays valid.")
    refresh_token: str | None = Field(
        default=None, description="The mlkube.io/refresh annotation value acted upon last."
    )
    failed_reads: int = Field(default=0, description="Consecutive failed reads (retried with backoff).")
    next_read_time: datetime | None = Field(default=None, description="When the source is read next.")
    last_refresh_error: RefreshError | None = Field(
        default=None, description="Why the last re-read failed (the data above stays valid)."
    )
    versions: list[DataVersion] = Field(
        default_factory=list, description="The source's recent content hashes, newest first (at most 10)."
    )
