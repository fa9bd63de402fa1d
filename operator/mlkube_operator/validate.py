"""`mlkube validate FILE...`: check mlkube manifests before they reach a cluster.

GitOps repositories want the error in CI, not in a status condition after merge.
The same models and messages as the operator's are used, so a file that passes
here is accepted by the operator. Files are read as the API server reads them
(`kubeyaml`: go-yaml's YAML 1.1 rules, where `target: y` is the boolean true), so a
file that passes here is not rejected by `kubectl apply` for a value PyYAML would
have read differently. Any `apiVersion` of the `mlkube.io` group other than the one
this mlkube serves is an error, not something to skip: the API server would refuse it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import yaml
from pydantic import ValidationError

from .api import KINDS
from .api.validation import InvalidSpecError, parse_model
from .constants import API_VERSION, GROUP
from .kubeyaml import Document, Surprise, load_all

_BY_KIND = {k.kind: k for k in KINDS}
# Exit codes above 125 mean "not executable" or "killed by a signal" to shells.
MAX_EXIT_CODE = 125


def _documents(path: Path) -> Iterable[tuple[str, Document | Exception]]:
    files = sorted(path.rglob("*.y*ml")) if path.is_dir() else [path]
    for file in files:
        try:
            for index, doc in enumerate(load_all(file.read_text())):
                if doc.value is not None:
                    yield f"{file}[{index}]", doc
        except (OSError, UnicodeDecodeError, yaml.YAMLError) as err:
            yield str(file), err


def _error_lines(err: InvalidSpecError, surprises: list[Surprise]) -> str:
    """The operator's message, with the YAML 1.1 reading explained where it caused an error."""
    cause = err.__cause__
    if not isinstance(cause, ValidationError) or not surprises:
        return err.message
    lines: list[str] = []
    for line, path in zip(err.message.split("; "), err.fields, strict=False):
        hints = [
            s.explain() for s in surprises if s.path == path or s.path.startswith((f"{path}.", f"{path}["))
        ]
        lines.append(line + "".join(f" ({hint})" for hint in hints))
    if len(lines) != len(err.fields):  # a message held "; " itself: keep it whole
        return err.message + "".join(f" ({s.path}: {s.explain()})" for s in surprises)
    return "; ".join(lines)


def _check(doc: dict[str, Any], surprises: list[Surprise]) -> tuple[str, str] | None:
    """(Kind/name, problem) for an invalid mlkube resource; None when valid or not ours."""
    api_version = doc.get("apiVersion")
    if not isinstance(api_version, str) or api_version.split("/", 1)[0] != GROUP:
        return None
    meta = doc.get("metadata")
    name = meta.get("name", "?") if isinstance(meta, dict) else "?"
    kind = _BY_KIND.get(str(doc.get("kind")))
    title = f"{doc.get('kind')}/{name}"
    if api_version != API_VERSION:
        return title, (
            f"apiVersion {api_version!r} is not served by this mlkube "
            f"(the {GROUP} group has only {API_VERSION}); the API server would refuse it"
        )
    if kind is None:
        return title, f"kind {doc.get('kind')!r} is not an mlkube kind ({', '.join(sorted(_BY_KIND))})"
    if not isinstance(name, str):
        hints = [s.explain() for s in surprises if s.path == "metadata.name"]
        return title, "metadata.name: must be a string" + "".join(f" ({h})" for h in hints)
    try:
        parse_model(kind.spec, doc.get("spec"))
    except InvalidSpecError as err:
        return title, _error_lines(err, surprises)
    return None


def validate(paths: list[Path], out: TextIO = sys.stdout) -> int:
    """Print one line per invalid document; return how many there are."""
    bad = checked = 0
    for path in paths:
        for where, doc in _documents(path):
            if isinstance(doc, Exception):
                print(f"{where}: cannot read: {doc}", file=out)
                bad += 1
                continue
            if not isinstance(doc.value, dict):
                continue
            problem = _check(doc.value, doc.surprises)
            api_version = doc.value.get("apiVersion")
            if isinstance(api_version, str) and api_version.split("/", 1)[0] == GROUP:
                checked += 1
            if problem is not None:
                print(f"{where}: {problem[0]}: {problem[1]}", file=out)
                bad += 1
    print(f"{checked} mlkube resource(s) checked, {bad} invalid", file=out)
    return bad


def exit_code(invalid: int) -> int:
    """The number of invalid documents, capped so a shell never reads it as a signal."""
    return min(invalid, MAX_EXIT_CODE)
