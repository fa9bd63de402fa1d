"""Command line of the Job pods: parse, run, and always leave a termination message.

Whatever happens (a bad argument, a bad spec, a data problem, a crash), the process
ends with one JSON result in the termination log and on stdout's last line, and an
exit code that tells the Job's podFailurePolicy whether retrying can help. Even an
argument error is reported that way (exit 3, InvalidSpec): the operator built the
command line, and retrying the same one cannot succeed.
"""

from __future__ import annotations

import argparse
import json
import traceback
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NoReturn

from pydantic import BaseModel

from mlkube_operator.api.dataset import DatasetSpec
from mlkube_operator.api.trainingrun import TrainingRunSpec
from mlkube_operator.api.validation import InvalidSpecError, parse_model

from .. import constants as C
from .contract import (
    DEFAULT_ALLOWED_PREFIXES,
    DEFAULT_SOURCE_TIMEOUT_SECONDS,
    DEFAULT_TERMINATION_LOG,
    EXIT_OK,
    EXIT_PERMANENT,
    EXIT_RETRYABLE,
    Reason,
)
from .errors import JobFailure
from .termination import emit


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise _UsageError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m mlkube_operator.training", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    profile = commands.add_parser("profile", help="Load, validate, hash and profile a Dataset.")
    profile.add_argument("--spec-json", required=True, help="The Dataset spec as JSON (camelCase).")
    _common(profile)
    profile.add_argument("--configmap-dir", type=Path, help="Where the source ConfigMap is mounted.")
    profile.add_argument(
        "--source-timeout",
        type=float,
        default=DEFAULT_SOURCE_TIMEOUT_SECONDS,
        help="Seconds to wait for a url source.",
    )

    train = commands.add_parser("train", help="Train, evaluate and save a model.")
    train.add_argument("--spec-json", required=True, help="The TrainingRun spec as JSON (camelCase).")
    _common(train)
    train.add_argument("--uid", required=True, help="The TrainingRun's metadata.uid.")
    train.add_argument(
        "--generation",
        type=int,
        default=1,
        help="The TrainingRun's metadata.generation (one model per generation).",
    )
    train.add_argument(
        "--follow-round",
        type=int,
        default=0,
        help="Retrains of this generation that followed new Dataset contents (its own model directory).",
    )
    train.add_argument("--data-uri", required=True, help="file:// URI of the Dataset's canonical data.csv.")
    train.add_argument(
        "--dataset-hash", required=True, help="The Dataset's contentHash (sha256 of data.csv)."
    )
    train.add_argument("--target", required=True, help="The target column.")
    train.add_argument(
        "--allowed-prefixes",
        action="append",
        help="Allowed estimator class path prefixes, comma-separated, repeatable (default: sklearn.).",
    )

    trial = commands.add_parser("trial", help="Run one trial of a TrainingRun's spec.search.")
    trial.add_argument("--spec-json", required=True, help="The TrainingRun spec as JSON (camelCase).")
    _common(trial)
    trial.add_argument("--uid", required=True, help="The TrainingRun's metadata.uid.")
    trial.add_argument("--generation", type=int, default=1, help="The TrainingRun's metadata.generation.")
    trial.add_argument(
        "--follow-round", type=int, default=0, help="As for train: the Follow round this search belongs to."
    )
    trial.add_argument(
        "--index", type=int, help="The trial to run (default: $JOB_COMPLETION_INDEX of an Indexed Job)."
    )
    trial.add_argument("--data-uri", required=True, help="file:// URI of the Dataset's canonical data.csv.")
    trial.add_argument("--dataset-hash", required=True, help="The Dataset's contentHash.")
    trial.add_argument("--target", required=True, help="The target column.")
    trial.add_argument("--allowed-prefixes", action="append", help="As for train.")
    return parser


def _common(sub: argparse.ArgumentParser) -> None:
    sub.add_argument("--namespace", required=True)
    sub.add_argument("--name", required=True)
    sub.add_argument(
        "--artifact-root",
        required=True,
        help="Root of the artifact store: a mounted directory, or s3://bucket/prefix (MLKUBE_ARTIFACT_* env).",
    )
    sub.add_argument(
        "--termination-log",
        default=DEFAULT_TERMINATION_LOG,
        help="Where to write the result (the container's terminationMessagePath).",
    )


def _spec(model: type[BaseModel], text: str) -> Any:
    try:
        body = json.loads(text)
    except json.JSONDecodeError as err:
        raise JobFailure(Reason.INVALID_SPEC, f"--spec-json is not JSON: {err}") from err
    if not isinstance(body, dict):
        raise JobFailure(Reason.INVALID_SPEC, "--spec-json must be a JSON object")
    try:
        return parse_model(model, body)
    except InvalidSpecError as err:
        raise JobFailure(Reason.INVALID_SPEC, err.message) from err


def _prefixes(values: list[str] | None) -> tuple[str, ...]:
    if not values:
        return DEFAULT_ALLOWED_PREFIXES
    found = tuple(p.strip() for v in values for p in v.split(",") if p.strip())
    return found or DEFAULT_ALLOWED_PREFIXES


def _profile(args: argparse.Namespace) -> dict[str, Any]:
    from .profile_job import ProfileRequest, run_profile

    request = ProfileRequest(
        spec=_spec(DatasetSpec, args.spec_json),
        namespace=args.namespace,
        name=args.name,
        artifact_root=args.artifact_root,
        configmap_dir=args.configmap_dir,
        source_timeout=args.source_timeout,
    )
    return run_profile(request)


def _train(args: argparse.Namespace) -> dict[str, Any]:
    from .train_job import TrainRequest, run_train

    request = TrainRequest(
        spec=_spec(TrainingRunSpec, args.spec_json),
        namespace=args.namespace,
        name=args.name,
        uid=args.uid,
        generation=args.generation,
        data_uri=args.data_uri,
        dataset_hash=args.dataset_hash,
        target=args.target,
        artifact_root=args.artifact_root,
        allowed_prefixes=_prefixes(args.allowed_prefixes),
        follow_round=args.follow_round,
    )
    if request.spec.search is not None:
        # The refit of a search: collate the trials' results into the trial table first.
        from .artifacts import open_store
        from .search_job import collect_trials, refit_search_dir

        where = refit_search_dir(args.namespace, args.name, args.uid, args.generation, args.follow_round)
        collect_trials(open_store(request.artifact_root), where, request.spec.search)
    return run_train(request)


def _trial(args: argparse.Namespace) -> dict[str, Any]:
    from .search_job import TrialRequest, run_trial

    request = TrialRequest(
        spec=_spec(TrainingRunSpec, args.spec_json),
        namespace=args.namespace,
        name=args.name,
        uid=args.uid,
        generation=args.generation,
        index=args.index,
        data_uri=args.data_uri,
        dataset_hash=args.dataset_hash,
        target=args.target,
        artifact_root=args.artifact_root,
        allowed_prefixes=_prefixes(args.allowed_prefixes),
        follow_round=args.follow_round,
    )
    return run_trial(request)


_COMMANDS: dict[str, tuple[Callable[[argparse.Namespace], dict[str, Any]], Reason]] = {
    "profile": (_profile, Reason.PROFILE_FAILED),
    "train": (_train, Reason.TRAINING_FAILED),
    "trial": (_trial, Reason.TRIAL_FAILED),
}


def _termination_log_from(argv: Sequence[str]) -> str:
    for i, arg in enumerate(argv):
        if arg == "--termination-log" and i + 1 < len(argv):
            return argv[i + 1]
        if arg.startswith("--termination-log="):
            return arg.split("=", 1)[1]
    return DEFAULT_TERMINATION_LOG


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; returns the process exit code (0, 1 retryable, 3 permanent, 4 trial failed)."""
    import sys

    args_list = list(sys.argv[1:] if argv is None else argv)
    try:
        args = build_parser().parse_args(args_list)
    except _UsageError as err:
        emit(
            {"ok": False, "reason": str(Reason.INVALID_SPEC), "message": str(err)},
            _termination_log_from(args_list),
        )
        return EXIT_PERMANENT
    run, crash_reason = _COMMANDS[args.command]
    try:
        result = run(args)
        code = EXIT_OK
    except JobFailure as failure:
        result = failure.result()
        code = failure.exit_code
    except Exception as err:
        traceback.print_exc()
        result = {"ok": False, "reason": str(crash_reason), "message": f"{type(err).__name__}: {err}"}
        code = EXIT_RETRYABLE
    emit(_redacted(result), args.termination_log)
    return code


_SECRET_ENV = (
    C.ENV_SOURCE_SECRET_ACCESS_KEY,
    C.ENV_SOURCE_SQL_URL,
    C.ENV_ARTIFACT_SECRET_ACCESS_KEY,
)


def _redacted(result: dict[str, Any]) -> dict[str, Any]:
    """The result with any credential from the environment cut out of its message.

    The readers already word their messages without credentials; this is the net under
    them, because a termination message ends up in status and Events.
    """
    import os
    from urllib.parse import urlparse

    secrets: list[str] = []
    for name in _SECRET_ENV:
        value = os.environ.get(name, "")
        if value:
            secrets.append(value)
            password = urlparse(value).password if "://" in value else None
            if password:
                secrets.append(password)
    message = result.get("message")
    if not secrets or not isinstance(message, str):
        return result
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) >= 4:
            message = message.replace(secret, "***")
    return {**result, "message": message}
