"""What the model takes as input: feature names, which columns are categorical, NaN tolerance.

The protocol codecs and the drift metrics both need to know, per column, whether a value
is a number or a category and whether a missing value is acceptable; deciding that once,
from the model, its metadata and the reference profile, keeps the two from disagreeing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from .artifacts import ModelMetadata, ReferenceProfile

# What JSON values a categorical feature takes: the kinds of the levels it was fitted on.
STRING, BOOL, NUMBER = "string", "bool", "number"
# Without the fitted levels: mlkube's training makes every non-numeric column categorical,
# i.e. text or booleans as pandas read them, never numbers.
DEFAULT_LEVEL_KINDS = frozenset({STRING, BOOL})


def level_kind(value: Any) -> str | None:
    """``string``/``bool``/``number`` for a level or a JSON value; None for missing (NaN/None)."""
    if value is None:
        return None
    if isinstance(value, str):
        return STRING
    if isinstance(value, bool) or type(value).__name__ == "bool_":
        return BOOL
    if isinstance(value, float) and math.isnan(value):
        return None
    try:
        float(value)
    except (TypeError, ValueError):
        return STRING
    return NUMBER


def describe_kinds(kinds: frozenset[str], plural: bool = False) -> str:
    if plural:
        names = {STRING: "strings", BOOL: "booleans", NUMBER: "numbers"}
    else:
        names = {STRING: "a string", BOOL: "true/false", NUMBER: "a number"}
    return " or ".join(names[k] for k in (STRING, BOOL, NUMBER) if k in kinds)


@dataclass(frozen=True)
class InputSchema:
    feature_names: tuple[str, ...]
    categorical: tuple[bool, ...]
    allow_nan: bool
    # Per feature: the JSON kinds a categorical feature accepts (empty for numeric ones).
    level_kinds: tuple[frozenset[str], ...] = field(default=())

    def accepts(self, j: int, kind: str) -> bool:
        kinds = self.level_kinds[j] if self.level_kinds else DEFAULT_LEVEL_KINDS
        return kind in kinds

    def kinds_of(self, j: int) -> frozenset[str]:
        return self.level_kinds[j] if self.level_kinds else DEFAULT_LEVEL_KINDS

    @property
    def numbers_fit_categories(self) -> bool:
        """True when every categorical feature accepts numbers (a numeric tensor can carry them)."""
        return all(self.accepts(j, NUMBER) for j, cat in enumerate(self.categorical) if cat)

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
        fitted_levels: Mapping[str, Sequence[Any]] | None = None,
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
        kinds: list[frozenset[str]] = []
        for name, cat in zip(feature_names, categorical, strict=True):
            levels = (fitted_levels or {}).get(name)
            found = frozenset(k for k in map(level_kind, levels or ()) if k is not None)
            kinds.append((found or DEFAULT_LEVEL_KINDS) if cat else frozenset())
        return cls(tuple(feature_names), tuple(categorical), allow_nan, tuple(kinds))
