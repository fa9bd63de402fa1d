"""Get a Dataset's rows from wherever they live, and say precisely why when we cannot.

Failures here become the Dataset's condition message, read by someone who cannot see
the pod: it must name the URL and what it answered, the missing ConfigMap key, the
line with the wrong number of fields. Whether a failure is permanent also matters: a
404 or a malformed file will not fix itself (exit 3, the Job stops), a refused
connection or a 503 may (exit 1, the Job retries).

CSV structure is checked with the stdlib csv module before pandas sees the text,
because pandas silently pads short rows with NaN and silently turns a column of
every row into the index when all rows have one field too many.
"""

from __future__ import annotations

import csv
import gzip
import http.client
import io
import socket
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Any

import pandas as pd

from mlkube_operator.api.dataset import BuiltinDataset, DatasetSpec

from .artifacts import ArtifactStore
from .contract import DEFAULT_SOURCE_TIMEOUT_SECONDS, Reason
from .errors import JobFailure
from .tables import load_s3, load_sql

# The label column of scikit-learn's bundled datasets (load_*(as_frame=True).frame).
BUILTIN_TARGET = "target"
_MAX_REPORTED_ROWS = 3
_USER_AGENT = "mlkube-profile/0.1"


def load_frame(
    spec: DatasetSpec,
    *,
    store: ArtifactStore,
    configmap_dir: Path | None,
    timeout: float = DEFAULT_SOURCE_TIMEOUT_SECONDS,
) -> tuple[pd.DataFrame, str]:
    """The source's table and a short description of where it came from."""
    src = spec.source
    if src.builtin is not None:
        return load_builtin(src.builtin, spec.target), f"builtin dataset {src.builtin.value}"
    if src.url is not None:
        return parse_csv(fetch_url(src.url, timeout), src.url), src.url
    if src.path is not None:
        return parse_csv(read_path(store, src.path), src.path), src.path
    if src.config_map is not None:
        origin = f"ConfigMap {src.config_map.name} key {src.config_map.key}"
        return parse_csv(
            read_configmap(configmap_dir, src.config_map.name, src.config_map.key), origin
        ), origin
    if src.s3 is not None:
        return load_s3(src.s3, timeout), src.s3.uri
    if src.sql is not None:
        return load_sql(src.sql, timeout)
    raise JobFailure(
        Reason.INVALID_SPEC, "spec.source: exactly one of builtin, url, path, configMap, s3, sql must be set"
    )


def load_builtin(name: BuiltinDataset, target: str) -> pd.DataFrame:
    """A bundled dataset; its label column `target` takes the spec's target name if that is new."""
    import sklearn.datasets

    loader = getattr(sklearn.datasets, f"load_{name.value}")
    frame: pd.DataFrame = loader(as_frame=True).frame
    if target not in frame.columns:
        frame = frame.rename(columns={BUILTIN_TARGET: target})
    return frame


def fetch_url(url: str, timeout: float) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT, "Accept-Encoding": "gzip"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body: bytes = response.read()
            if (response.headers.get("Content-Encoding") or "").lower() == "gzip":
                body = gzip.decompress(body)
            return body
    except urllib.error.HTTPError as err:
        # 408 and 429 ask us to come back later; other 4xx will answer the same next time.
        permanent = 400 <= err.code < 500 and err.code not in (408, 429)
        raise JobFailure(
            Reason.SOURCE_UNAVAILABLE,
            f"GET {url} answered HTTP {err.code} {err.reason}",
            permanent=permanent,
        ) from err
    except urllib.error.URLError as err:
        raise JobFailure(
            Reason.SOURCE_UNAVAILABLE, f"GET {url} failed: {_describe(err.reason)}", permanent=False
        ) from err
    except TimeoutError as err:
        raise JobFailure(
            Reason.SOURCE_UNAVAILABLE, f"GET {url} failed: no answer within {timeout:g} s", permanent=False
        ) from err
    except ValueError as err:
        raise JobFailure(Reason.SOURCE_UNAVAILABLE, f"GET {url} is not possible: {err}") from err
    except (OSError, EOFError, zlib.error, http.client.HTTPException) as err:
        raise JobFailure(
            Reason.SOURCE_UNAVAILABLE, f"GET {url} failed while reading: {_describe(err)}", permanent=False
        ) from err


def _describe(reason: Any) -> str:
    if isinstance(reason, ConnectionRefusedError):
        return "connection refused"
    if isinstance(reason, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(reason, socket.gaierror):
        return f"cannot resolve host ({reason.strerror or reason})"
    if isinstance(reason, OSError) and reason.strerror:
        return reason.strerror
    return str(reason)


def read_path(store: ArtifactStore, relative: str) -> bytes:
    if relative.startswith("/") or ".." in relative.split("/"):
        raise JobFailure(
            Reason.INVALID_SPEC, f"spec.source.path: {relative!r} must be relative, without '..'"
        )
    try:
        return store.read(relative)
    except FileNotFoundError as err:
        raise JobFailure(
            Reason.SOURCE_UNAVAILABLE, f"path {relative} does not exist in the artifact store"
        ) from err
    except IsADirectoryError as err:
        raise JobFailure(Reason.SOURCE_UNAVAILABLE, f"path {relative} is a directory, not a file") from err
    except OSError as err:
        raise JobFailure(
            Reason.SOURCE_UNAVAILABLE, f"path {relative} cannot be read: {_describe(err)}", permanent=False
        ) from err


def read_configmap(configmap_dir: Path | None, name: str, key: str) -> bytes:
    """The key's file in the directory where the Job mounted the ConfigMap."""
    if configmap_dir is None:
        raise JobFailure(Reason.INVALID_SPEC, "source is a ConfigMap but the Job passed no --configmap-dir")
    if "/" in key or key in (".", ".."):
        raise JobFailure(Reason.INVALID_SPEC, f"spec.source.configMap.key: {key!r} is not a valid key")
    path = configmap_dir / key
    if not path.is_file():
        present: list[str] = []
        if configmap_dir.is_dir():
            present = sorted(p.name for p in configmap_dir.iterdir() if not p.name.startswith("."))
        have = f" (it has: {', '.join(present[:20])})" if present else ""
        raise JobFailure(Reason.SOURCE_UNAVAILABLE, f"ConfigMap {name} has no key {key!r}{have}")
    return path.read_bytes()


def parse_csv(data: bytes, origin: str) -> pd.DataFrame:
    """Parse CSV with a header row; anything not a clean rectangle is ValidationFailed."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise JobFailure(
            Reason.VALIDATION_FAILED,
            f"{origin}: not UTF-8 text (invalid byte 0x{data[err.start]:02x} at offset {err.start})",
        ) from err
    if not text.strip():
        raise JobFailure(Reason.VALIDATION_FAILED, f"{origin}: the file is empty (expected a CSV header row)")
    _check_structure(text, origin)
    try:
        frame = pd.read_csv(io.StringIO(text), index_col=False, low_memory=False, skip_blank_lines=True)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as err:
        raise JobFailure(Reason.VALIDATION_FAILED, f"{origin}: malformed CSV: {err}") from err
    return frame


def parse_canonical(data: bytes) -> pd.DataFrame:
    """Parse bytes this package wrote in the canonical form (see canonical.py).

    They are rectangular, UTF-8 and have a clean header by construction, so the
    structure check parse_csv runs on foreign CSV is skipped: pandas' C parser reads
    the bytes directly, with the same options (and so the same values) as parse_csv.
    """
    return pd.read_csv(
        io.BytesIO(data), index_col=False, low_memory=False, skip_blank_lines=True, encoding="utf-8"
    )


def _check_structure(text: str, origin: str) -> None:
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    bad: list[str] = []
    bad_count = 0
    try:
        for row in reader:
            if not row:
                continue  # blank line: skipped, as pandas does
            if header is None:
                header = row
                _check_header(header, origin)
                continue
            if len(row) != len(header):
                bad_count += 1
                if len(bad) < _MAX_REPORTED_ROWS:
                    bad.append(f"line {reader.line_num} has {len(row)}")
    except csv.Error as err:
        raise JobFailure(
            Reason.VALIDATION_FAILED, f"{origin}: malformed CSV at line {reader.line_num}: {err}"
        ) from err
    if bad and header is not None:
        more = f" and {bad_count - len(bad)} more rows" if bad_count > len(bad) else ""
        raise JobFailure(
            Reason.VALIDATION_FAILED,
            f"{origin}: ragged rows: the header has {len(header)} fields but " + ", ".join(bad) + more,
        )


def _check_header(header: list[str], origin: str) -> None:
    empty = [str(i + 1) for i, name in enumerate(header) if not name.strip()]
    if empty:
        raise JobFailure(
            Reason.VALIDATION_FAILED,
            f"{origin}: header column(s) {', '.join(empty[:10])} have no name (is there an index column?)",
        )
    seen: set[str] = set()
    dupes: list[str] = []
    for name in header:
        if name in seen and name not in dupes:
            dupes.append(name)
        seen.add(name)
    if dupes:
        raise JobFailure(
            Reason.VALIDATION_FAILED, f"{origin}: duplicate column name(s) {', '.join(map(repr, dupes[:10]))}"
        )
