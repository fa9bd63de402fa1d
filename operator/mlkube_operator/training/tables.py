"""Tables from where data teams keep them: object storage (CSV, Parquet) and PostgreSQL.

Both end as the same pandas frame the CSV sources give, with the same column types
(int64, float64, strings, booleans; missing values as NaN/None), because the content
hash is computed over the canonical serialisation of that frame: the same table read
as CSV over HTTP, as Parquet from S3 or from a query hashes the same. Two details
make that true: Parquet dictionary (categorical) and partition columns are decoded to
their plain values, and SQL `numeric` (Decimal) values become floats, as a CSV
parser would read them.

Rows keep the source's order; a directory is read file by file in lexicographic key
order (the order `aws s3 ls` shows), so a re-read of unchanged data hashes the same.

Credentials come from the Job's environment (Secrets) and are removed from every
message; a message names the bucket, key, endpoint, host and database instead.
"""

from __future__ import annotations

import decimal
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pandas as pd

from mlkube_operator import constants as C
from mlkube_operator.api.dataset import DataFormat, S3Source, SqlSource

from .contract import Reason
from .errors import JobFailure
from .objectstore import parse_s3_uri, redact, s3_failure, source_config

if TYPE_CHECKING:
    import pyarrow as pa

_SUFFIXES = {DataFormat.PARQUET: (".parquet", ".pq", ".parq"), DataFormat.CSV: (".csv", ".csv.gz")}
_MAX_LISTED = 5


def load_s3(src: S3Source, timeout: float) -> pd.DataFrame:
    from pyarrow import fs as pafs

    config = source_config(src.endpoint, src.region)
    loc = parse_s3_uri(src.uri)
    if not loc.key and not loc.bucket:
        raise JobFailure(Reason.INVALID_SPEC, f"spec.source.s3.uri: {src.uri!r} names no bucket")
    filesystem = config.filesystem(timeout)
    try:
        info = filesystem.get_file_info(loc.path)
        if info.type == pafs.FileType.NotFound:
            bucket = filesystem.get_file_info(loc.bucket)
            if bucket.type == pafs.FileType.NotFound:
                raise JobFailure(
                    Reason.SOURCE_UNAVAILABLE,
                    f"{src.uri}{config.where}: bucket {loc.bucket!r} does not exist",
                )
            raise JobFailure(Reason.SOURCE_UNAVAILABLE, f"{src.uri}{config.where}: no such key")
        if info.type == pafs.FileType.File:
            files = [loc.path]
        else:
            listed = filesystem.get_file_info(pafs.FileSelector(loc.path, recursive=True))
            files = sorted(
                f.path for f in listed if f.type == pafs.FileType.File and _wanted(f.path, src.format)
            )
            if not files:
                raise JobFailure(
                    Reason.SOURCE_UNAVAILABLE,
                    f"{src.uri}{config.where}: no {'/'.join(_SUFFIXES[src.format])} files under this prefix",
                )
        if src.format is DataFormat.PARQUET:
            return _parquet(filesystem, files, loc.path if info.type != pafs.FileType.File else None, src.uri)
        return _csv(filesystem, files, src.uri)
    except JobFailure:
        raise
    except OSError as err:
        raise s3_failure(err, src.uri, config, reason=Reason.SOURCE_UNAVAILABLE) from err


def _wanted(path: str, fmt: DataFormat) -> bool:
    name = path.rsplit("/", 1)[-1]
    return not name.startswith(("_", ".")) and name.lower().endswith(_SUFFIXES[fmt])


def _parquet(filesystem: Any, files: list[str], base_dir: str | None, uri: str) -> pd.DataFrame:
    import pyarrow as pa
    import pyarrow.dataset as pads

    try:
        dataset = pads.dataset(
            files,
            filesystem=filesystem,
            format="parquet",
            partitioning="hive" if base_dir else None,
            partition_base_dir=base_dir,
        )
        table = dataset.to_table()
    except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError) as err:
        shown = ", ".join(f"s3://{f}" for f in files[:_MAX_LISTED])
        raise JobFailure(
            Reason.VALIDATION_FAILED, f"{uri}: not readable as one Parquet table ({shown}): {err}"
        ) from err
    return arrow_to_frame(table)


def arrow_to_frame(table: pa.Table) -> pd.DataFrame:
    """A pandas frame with the dtypes the CSV parser would give the same values."""
    import pyarrow as pa

    columns = []
    for column in table.columns:
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if pa.types.is_decimal(column.type):
            column = column.cast(pa.float64())  # as a CSV parser reads 10.50
        columns.append(column)
    plain = pa.table(columns, names=table.column_names)
    return plain.to_pandas(self_destruct=True, split_blocks=True, date_as_object=True)


def _csv(filesystem: Any, files: list[str], uri: str) -> pd.DataFrame:
    from .sources import parse_csv

    frames: list[pd.DataFrame] = []
    for path in files:
        with filesystem.open_input_stream(path) as stream:
            data = stream.read()
        if path.lower().endswith(".gz"):
            import gzip

            data = gzip.decompress(data)
        frame = parse_csv(data, f"s3://{path}")
        if frames and list(frame.columns) != list(frames[0].columns):
            raise JobFailure(
                Reason.VALIDATION_FAILED,
                f"{uri}: s3://{path} has columns {list(frame.columns)}, but s3://{files[0]} has {list(frames[0].columns)}",
            )
        frames.append(frame)
    if len(frames) == 1:
        return frames[0]
    return pd.concat(frames, ignore_index=True)


def describe_url(url: str) -> str:
    """host:port/database of a connection URL: no user, no password."""
    parsed = urlparse(url)
    host = parsed.hostname or "localhost"
    port = f":{parsed.port}" if parsed.port else ""
    return f"PostgreSQL at {host}{port}{parsed.path or ''}"


def load_sql(src: SqlSource, timeout: float) -> tuple[pd.DataFrame, str]:
    import psycopg

    url = os.environ.get(C.ENV_SOURCE_SQL_URL, "")
    ref = f"Secret {src.connection_secret.name} key {src.connection_secret.key}"
    if not url.strip():
        raise JobFailure(Reason.INVALID_SPEC, f"spec.source.sql.connectionSecret: {ref} is empty")
    if urlparse(url).scheme not in ("postgresql", "postgres"):
        raise JobFailure(
            Reason.INVALID_SPEC, f"spec.source.sql.connectionSecret: {ref} does not hold a postgresql:// URL"
        )
    where = describe_url(url)
    secrets = [p for p in (urlparse(url).password, url) if p]
    try:
        conn = psycopg.connect(
            url,
            connect_timeout=max(1, int(timeout)),
            options=f"-c statement_timeout={int(timeout * 1000)}",
            application_name="mlkube-profile",
        )
    except psycopg.OperationalError as err:
        text = redact(str(err), secrets).strip()
        low = text.lower()
        permanent = "authentication failed" in low or "does not exist" in low or "no password" in low
        if "authentication failed" in low:
            text = f"access denied (check {ref}): {_last_line(text)}"
        raise JobFailure(
            Reason.SOURCE_UNAVAILABLE, f"{where}: {_last_line(text)}", permanent=permanent
        ) from None
    try:
        with conn:
            conn.read_only = True
            with conn.cursor() as cur:
                cur.execute(src.query.encode("utf-8"))
                if cur.description is None:
                    raise JobFailure(
                        Reason.INVALID_SPEC,
                        "spec.source.sql.query: the statement returns no rows (not a SELECT)",
                    )
                names = [d.name for d in cur.description]
                rows = cur.fetchall()
    except JobFailure:
        raise
    except psycopg.Error as err:
        state = err.sqlstate or ""
        text = _last_line(redact(str(err), secrets))
        # 42xxx: syntax error or access rule violation (unknown table or column, no
        # privilege); 25006: the statement tried to write in the read-only transaction.
        if state.startswith("42") or state == "25006":
            raise JobFailure(Reason.INVALID_SPEC, f"spec.source.sql.query: {text}") from None
        if state.startswith("22"):  # data exception: the query ran into values it cannot handle
            raise JobFailure(Reason.VALIDATION_FAILED, f"{where}: query failed: {text}") from None
        raise JobFailure(
            Reason.SOURCE_UNAVAILABLE, f"{where}: query failed: {text}", permanent=False
        ) from None
    if len(set(names)) != len(names):
        dupes = sorted({n for n in names if names.count(n) > 1})
        raise JobFailure(
            Reason.VALIDATION_FAILED, f"spec.source.sql.query: duplicate column name(s) {dupes} in the result"
        )
    if not rows:
        raise JobFailure(Reason.VALIDATION_FAILED, f"{where}: the query returned no rows")
    frame = pd.DataFrame.from_records(rows, columns=names)
    for name in names:
        values = frame[name].dropna()
        if len(values) and all(isinstance(v, decimal.Decimal) for v in values):
            frame[name] = pd.to_numeric(frame[name].map(_decimal_to_float), errors="raise")
    return frame, f"{where} query"


def _decimal_to_float(value: Any) -> float | None:
    return None if value is None else float(value)


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return "; ".join(lines)[:500] if lines else "unknown error"
