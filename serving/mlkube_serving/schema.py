"""What the model takes as input: feature names, which columns are categorical, NaN tolerance.

The protocol codecs and the drift metrics both need to know, per column, whether a value
is a number or a category and whether a missing value is acceptable; deciding that once,
from the model, its metadata and the reference profile, keeps the two from disagreeing.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from .artifacts import ModelMetadata, ReferenceProfile


@dataclass(frozen=True)
class InputSchema:
    feature_names: tuple[str, ...]
    categorical: tuple[bool, ...]
    allow_nan: bool

    @property
    def n_features(self) -> int:
        return len(self.feature_names)

    @property
    def all_numeric(self) -> bool:
        return not any(self.categorical)

    def with_allow_nan(self, allow_nan: bool) -> InputSchema:
        return replace(self, allow_nan=allow_nan)

    @classmethod
    def build(
        cls,
        feature_names: list[str],
        metadata: ModelMetadata | None,
        profile: ReferenceProfile | None,
        allow_nan: bool,
    ) -> InputSchema:
        """Column kinds from the training metadata's ``schema`` first, else the reference profile."""
        declared: dict[str, str] = {}
        for entry in (metadata.schema_ if metadata is not None else None) or []:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                declared[entry["name"]] = str(entry.get("dtype") or entry.get("kind") or "")
        categorical = []
        for name in feature_names:
            if name in declared:
                categorical.append(declared[name] == "categorical")
                continue
            column = profile.feature(name) if profile is not None else None
            categorical.append(column is not None and column.kind == "categorical")
        return cls(tuple(feature_names), tuple(categorical), allow_nan)
