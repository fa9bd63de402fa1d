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

from .common import ApiModel, Conditions, ConfigMapKeyReference, StatusModel

ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=256)]


class BuiltinDataset(StrEnum):
    """Datasets bundled with scikit-learn: no network needed."""

    IRIS = "iris"
    WINE = "wine"
    BREAST_CANCER = "breast_cancer"
    DIABETES = "diabetes"
    DIGITS = "digits"


class DatasetSource(ApiModel):
    """Exactly one of builtin, url, path or configMap."""

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

    @model_validator(mode="after")
    def _exactly_one(self) -> Self:
        chosen = [n for n in ("builtin", "url", "path", "config_map") if getattr(self, n) is not None]
        if len(chosen) != 1:
            raise ValueError(
                "exactly one of builtin, url, path, configMap must be set"
                + (f" (got {', '.join(chosen)})" if chosen else " (got none)")
            )
        if self.path is not None and (self.path.startswith("/") or ".." in self.path.split("/")):
            raise ValueError("path must be relative to the artifact volume and must not contain '..'")
        return self


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


class DatasetSpec(ApiModel):
    source: DatasetSource = Field(description="Where the data lives.")
    target: ColumnName = Field(description="The column to predict.")
    features: list[ColumnName] | None = Field(
        default=None, description="Feature columns; all columns but the target when omitted."
    )
    validation: ValidationRules = Field(default_factory=ValidationRules)
    profile: ProfileOptions = Field(default_factory=ProfileOptions)

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
    job_name: str | None = Field(default=None, description="The profile Job of the observed generation.")
    profiled_time: datetime | None = None
