"""Tables too large for a ConfigMap go to S3-compatible object storage as Parquet.

The profile and training Jobs read a Dataset's `source.s3` with the cluster's credentials
(a Secret); the notebook writes the object with the user's own (the standard
`AWS_ACCESS_KEY_ID` / `AWS_SECRET_ACCESS_KEY` variables, else anonymous: the AWS default
credential chain is not consulted, so nothing probes instance metadata). pyarrow writes
both the Parquet and the object, as the Jobs read it. The key is content addressed
(`<prefix>/<namespace>/<dataset>/<sha256 of the Parquet bytes>.parquet`), so re-running a
cell with the same table writes the same key and leaves the Dataset unchanged.
"""

from __future__ import annotations

import hashlib
import io
import os
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

from .errors import ApiError, InvalidSpec

if TYPE_CHECKING:
    import pandas as pd


def object_uri(prefix: str, namespace: str, name: str, digest: str) -> str:
    """Where a table goes under an `s3://bucket[/prefix]` URI (pure)."""
    parsed = urlparse(prefix)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise InvalidSpec(
            f"upload must be an s3://bucket[/prefix] URI, not {prefix!r}",
            reason="InvalidSpec",
            kind="Dataset",
            name=name,
        )
    path = "/".join(p for p in (parsed.path.strip("/"), namespace, name, f"{digest}.parquet") if p)
    return f"s3://{parsed.netloc}/{path}"


def parquet_bytes(df: pd.DataFrame) -> bytes:
    """The table as Parquet (no pandas index column)."""
    buffer = io.BytesIO()
    df.to_parquet(buffer, engine="pyarrow", index=False)
    return buffer.getvalue()


def filesystem(endpoint: str | None, region: str) -> Any:
    from pyarrow import fs as pafs

    kwargs: dict[str, Any] = {"region": region, "connect_timeout": 10, "request_timeout": 120}
    if endpoint:
        parsed = urlparse(endpoint)
        kwargs["endpoint_override"] = parsed.netloc
        kwargs["scheme"] = parsed.scheme or "https"
        kwargs["force_virtual_addressing"] = False  # self-hosted stores address buckets by path
    access, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
    if access and secret:
        kwargs["access_key"], kwargs["secret_key"] = access, secret
        if os.environ.get("AWS_SESSION_TOKEN"):
            kwargs["session_token"] = os.environ["AWS_SESSION_TOKEN"]
    else:
        kwargs["anonymous"] = True
    return pafs.S3FileSystem(**kwargs)


def upload_table(
    df: pd.DataFrame, prefix: str, namespace: str, name: str, endpoint: str | None, region: str
) -> str:
    """Write `df` as Parquet under `prefix`; returns its s3:// URI (ApiError naming the store
    and the cause when the write fails)."""
    data = parquet_bytes(df)
    uri = object_uri(prefix, namespace, name, hashlib.sha256(data).hexdigest())
    try:
        fs = filesystem(endpoint, region)
        with fs.open_output_stream(uri.removeprefix("s3://")) as out:
            out.write(data)
    except OSError as err:
        where = f" at {endpoint}" if endpoint else ""
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ApiError(
            f"cannot write {uri}{where}: {first}", reason="UploadFailed", kind="Dataset", name=name
        ) from None
    return uri
