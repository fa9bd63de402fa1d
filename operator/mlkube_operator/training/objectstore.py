"""S3-compatible object storage through pyarrow's own S3 client.

pyarrow already ships an S3 filesystem (the AWS C++ SDK) that reads Parquet
datasets and CSV files directly, so the Job entrypoints need no second client. What
this module adds is what the users of a Dataset need to see when it fails: a
message that names the bucket, the key and the endpoint and says what went wrong in
words (access denied, no such bucket, cannot connect), never the credentials, and a
verdict on whether retrying can help.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from .. import constants as C
from .contract import Reason
from .errors import JobFailure

if TYPE_CHECKING:
    from pyarrow import fs as pafs

_S3_URI = re.compile(r"^s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(?:/(?P<key>.*))?$")
CONNECT_TIMEOUT_SECONDS = 5.0


@dataclass(frozen=True)
class S3Location:
    bucket: str
    key: str  # without a leading '/', may be "" (the whole bucket) or end with '/'

    @property
    def path(self) -> str:
        """The pyarrow filesystem path: bucket/key."""
        return f"{self.bucket}/{self.key}".rstrip("/")

    def child(self, relative: str) -> S3Location:
        base = self.key.rstrip("/")
        return S3Location(self.bucket, f"{base}/{relative}" if base else relative)

    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


def parse_s3_uri(uri: str) -> S3Location:
    match = _S3_URI.match(uri.strip())
    if match is None:
        raise ValueError(f"{uri!r} is not an s3://bucket/key URI")
    return S3Location(match["bucket"], (match["key"] or "").lstrip("/"))


@dataclass(frozen=True)
class S3Config:
    """How to reach a store; the keys come from the environment, never from a spec."""

    endpoint: str | None
    region: str
    access_key: str | None = None
    secret_key: str | None = None

    @property
    def where(self) -> str:
        return f" at {self.endpoint}" if self.endpoint else ""

    def filesystem(self, request_timeout: float = 30.0) -> pafs.S3FileSystem:
        from pyarrow import fs as pafs

        kwargs: dict[str, object] = {
            "region": self.region,
            "connect_timeout": CONNECT_TIMEOUT_SECONDS,
            "request_timeout": request_timeout,
            "retry_strategy": pafs.AwsStandardS3RetryStrategy(max_attempts=2),
        }
        if self.endpoint:
            parsed = urlparse(self.endpoint)
            kwargs["endpoint_override"] = parsed.netloc
            kwargs["scheme"] = parsed.scheme or "https"
            # Self-hosted stores (SeaweedFS, MinIO, Ceph) address buckets by path.
            kwargs["force_virtual_addressing"] = False
        if self.access_key and self.secret_key:
            kwargs["access_key"] = self.access_key
            kwargs["secret_key"] = self.secret_key
        else:
            kwargs["anonymous"] = True
        return pafs.S3FileSystem(**kwargs)

    def secrets(self) -> list[str]:
        return [s for s in (self.access_key, self.secret_key) if s]


def source_config(endpoint: str | None, region: str, env: Mapping[str, str] | None = None) -> S3Config:
    env = os.environ if env is None else env
    return S3Config(
        endpoint=endpoint,
        region=region,
        access_key=env.get(C.ENV_SOURCE_ACCESS_KEY_ID) or None,
        secret_key=env.get(C.ENV_SOURCE_SECRET_ACCESS_KEY) or None,
    )


def artifact_config(env: Mapping[str, str] | None = None) -> S3Config:
    env = os.environ if env is None else env
    return S3Config(
        endpoint=env.get(C.ENV_ARTIFACT_ENDPOINT) or None,
        region=env.get(C.ENV_ARTIFACT_REGION) or "us-east-1",
        access_key=env.get(C.ENV_ARTIFACT_ACCESS_KEY_ID) or None,
        secret_key=env.get(C.ENV_ARTIFACT_SECRET_ACCESS_KEY) or None,
    )


def redact(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if len(secret) >= 4:
            text = text.replace(secret, "***")
    return text


def s3_failure(err: Exception, what: str, config: S3Config, *, reason: Reason) -> JobFailure:
    """A JobFailure whose message says what happened to `what` (e.g. 's3://b/k'), in words."""
    raw = redact(str(err), config.secrets())
    low = raw.lower()
    where = config.where
    if any(
        s in low for s in ("invalidaccesskeyid", "signaturedoesnotmatch", "access_denied", "accessdenied")
    ):
        return JobFailure(
            reason, f"{what}{where}: access denied (check the credentials Secret's keys)", permanent=True
        )
    if "nosuchbucket" in low or "bucket does not exist" in low or "bucket not found" in low:
        bucket = what.removeprefix("s3://").split("/", 1)[0]
        return JobFailure(reason, f"{what}{where}: bucket {bucket!r} does not exist", permanent=True)
    if any(
        s in low
        for s in ("network_connection", "curlcode", "couldn't connect", "connection refused", "timed out")
    ):
        return JobFailure(
            reason, f"{what}{where}: cannot connect to the endpoint ({_first_line(raw)})", permanent=False
        )
    if "nosuchkey" in low or "path does not exist" in low or "not found" in low:
        return JobFailure(reason, f"{what}{where}: no such key", permanent=True)
    return JobFailure(reason, f"{what}{where}: {_first_line(raw)}", permanent=False)


def _first_line(text: str) -> str:
    line = text.strip().splitlines()[0] if text.strip() else "unknown error"
    return line[:400]
