"""`mlkube validate FILE...`: check mlkube manifests before they reach a cluster.

GitOps repositories want the error in CI, not in a status condition after merge.
The same models and messages as the operator's are used, so a file that passes
here is accepted by the operator.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any, TextIO

import yaml

from .api import KINDS
from .api.validation import InvalidSpecError, parse_model
from .constants import API_VERSION

_BY_KIND = {k.kind: k for k in KINDS}


def _documents(path: Path) -> Iterable[tuple[str, Any]]:
    files = sorted(path.rglob("*.y*ml")) if path.is_dir() else [path]
    for file in files:
        try:
            for index, doc in enumerate(yaml.safe_load_all(file.read_text())):
                if doc is not None:
                    yield f"{file}[{index}]", doc
        except (OSError, yaml.YAMLError) as err:
            yield str(file), err


def validate(paths: list[Path], out: TextIO = sys.stdout) -> int:
    """Print one line per problem; return the number of invalid documents."""
    bad = checked = 0
    for path in paths:
        for where, doc in _documents(path):
            if isinstance(doc, Exception):
                print(f"{where}: cannot read: {doc}", file=out)
                bad += 1
                continue
            if not isinstance(doc, dict) or doc.get("apiVersion") != API_VERSION:
                continue
            kind = _BY_KIND.get(str(doc.get("kind")))
            name = (doc.get("metadata") or {}).get("name", "?")
            if kind is None:
                print(f"{where}: kind {doc.get('kind')!r} is not an mlkube kind", file=out)
                bad += 1
                continue
            checked += 1
            try:
                parse_model(kind.spec, doc.get("spec"))
            except InvalidSpecError as err:
                print(f"{where}: {kind.kind}/{name}: {err.message}", file=out)
                bad += 1
    print(f"{checked} mlkube resource(s) checked, {bad} invalid", file=out)
    return bad
