"""Typed settings for the model server, from command-line flags over ``MLKUBE_*`` variables.

The operator configures serving pods through environment variables (``MLKUBE_HOST`` comes
from the downward API), while people debugging a model run the same server with flags;
both must mean exactly the same thing, so one pydantic model validates the merge of the
two and nothing else reads the environment.  pydantic-settings would do the same with
one more dependency in every serving image; the merge below is a dozen lines.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

ENV_PREFIX = "MLKUBE_"


class Settings(BaseModel):
    """Everything the server can be told. Field ``x_y`` is flag ``--x-y`` and env ``MLKUBE_X_Y``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    model_uri: str | None = Field(default=None, description="file:// URI, path or s3:// URI of model.joblib.")
    model_sha256: str | None = Field(
        default=None, description="Expected sha256 of model.joblib; without it the model is never loaded."
    )
    model_name: str = Field(
        default="model",
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,252}$",
        description="Name in the URL paths (/v2/models/NAME/...).",
    )
    host: str = Field(default="0.0.0.0", description="Address to listen on.")
    port: int = Field(default=8080, ge=0, le=65535, description="Port to listen on (0: any free port).")
    reference_profile: str | None = Field(
        default=None,
        description="file:// URI, path or s3:// URI of the dataset's profile.json (drift bin edges).",
    )
    max_body_bytes: int = Field(
        default=8 * 1024 * 1024, ge=1024, description="Largest request body accepted."
    )
    max_batch_size: int = Field(
        default=64, ge=1, le=4096, description="Most requests coalesced into one predict call."
    )
    max_batch_rows: int = Field(
        default=4096,
        ge=1,
        description="Most rows in one coalesced predict call (a larger request runs alone).",
    )
    max_batch_wait_ms: float = Field(
        default=2.0, ge=0.0, le=1000.0, description="Longest a request waits for others to join its batch."
    )
    offload_threshold_ms: float = Field(
        default=1.0,
        ge=0.0,
        description="Predict calls expected to take longer than this run in a worker thread, off the event loop.",
    )
    fast_path: bool = Field(
        default=True,
        description="Predict forests tree by tree without joblib dispatch (used only if bit-identical at warm-up).",
    )
    feedback_cache_size: int = Field(
        default=100_000, ge=0, description="How many request ids are remembered for feedback (LRU)."
    )
    log_level: str = Field(default="info", pattern=r"^(?i:debug|info|warning|error|critical)$")
    access_log: bool = Field(default=False, description="Log one JSON line per request.")
    graceful_timeout_s: float = Field(
        default=25.0, ge=0.0, description="On SIGTERM, how long in-flight requests may take to finish."
    )


# Flags whose names differ from the field (the contract spells the model name --name / MLKUBE_MODEL_NAME).
_FLAG_FOR_FIELD = {"model_name": "name"}


def _flag(field: str) -> str:
    return "--" + _FLAG_FOR_FIELD.get(field, field).replace("_", "-")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mlkube_serving",
        description="mlkube model server: KServe V1 and Open Inference Protocol V2 for scikit-learn models. "
        "Every flag can also be given as an MLKUBE_* environment variable; flags win.",
    )
    for name, field in Settings.model_fields.items():
        env = ENV_PREFIX + name.upper()
        help_text = f"{field.description or ''} [env {env}; default {field.default!r}]"
        if field.annotation is bool:
            parser.add_argument(
                _flag(name), dest=name, default=None, action=argparse.BooleanOptionalAction, help=help_text
            )
        else:
            parser.add_argument(_flag(name), dest=name, default=None, help=help_text)
    return parser


def load_settings(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> Settings:
    """Merge flags over ``MLKUBE_*`` variables and validate; raises SystemExit(2) with a message on error."""
    env = os.environ if environ is None else environ
    parser = _parser()
    args = parser.parse_args(argv)
    raw: dict[str, Any] = {}
    for name in Settings.model_fields:
        value = getattr(args, name)
        if value is None:
            value = env.get(ENV_PREFIX + name.upper())
            if value == "":
                value = None
        if value is not None:
            raw[name] = value
    try:
        # Strings from env/argv are coerced by pydantic's lax mode ("8080" -> 8080, "true" -> True).
        return Settings.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(
            f"{_flag(str(err['loc'][0]))} / {ENV_PREFIX}{str(err['loc'][0]).upper()}: {err['msg']}"
            for err in exc.errors()
        )
        parser.error(problems)
