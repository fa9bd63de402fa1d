"""Turn a resource body into typed models, with errors that name the field.

The handlers, `mlkube validate` and the tests share this, so a user sees the same
message (`spec.source: exactly one of ...`) from a CI check as from the cluster.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

M = TypeVar("M", bound=BaseModel)


class InvalidSpecError(ValueError):
    """The spec can never work as written; retrying will not help."""

    def __init__(self, message: str, fields: list[str]) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields


def _path(prefix: str, loc: tuple[int | str, ...]) -> str:
    out = prefix
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else f".{part}"
    return out


def format_errors(err: ValidationError, prefix: str = "spec") -> tuple[str, list[str]]:
    """One line per problem: `spec.split.testFraction: Input should be less than 1`."""
    lines: list[str] = []
    fields: list[str] = []
    for item in err.errors(include_url=False):
        # Model-level validators report at the model itself; strip pydantic's "Value error, ".
        msg = str(item["msg"]).removeprefix("Value error, ")
        path = _path(prefix, tuple(item["loc"]))
        fields.append(path)
        lines.append(f"{path}: {msg}")
    return "; ".join(lines), fields


def parse_model(model: type[M], body: Mapping[str, Any] | None, prefix: str = "spec") -> M:
    """Validate `body` (camelCase, as stored by the API server) into `model`."""
    if body is None:
        raise InvalidSpecError(f"{prefix}: is required", [prefix])
    try:
        return model.model_validate(dict(body), by_alias=True)
    except ValidationError as err:
        message, fields = format_errors(err, prefix)
        raise InvalidSpecError(message, fields) from err
