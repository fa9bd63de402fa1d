"""The SDK's upload of a large table to S3-compatible storage, against a real SeaweedFS.

`upload_table` writes Parquet with the notebook's AWS_* credentials (set in the
environment as a user would); the object is read back with pyarrow as the profile Job
reads it. tests/integration/test_sdk_upload.py creates a Dataset from such an upload on
the dev cluster.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlkube
from mlkube.upload import object_uri, upload_table


def _table(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "a": rng.normal(size=rows),
            "b": rng.integers(0, 100, size=rows),
            "c": rng.choice(["x", "y", "z"], size=rows),
            "y": rng.integers(0, 2, size=rows),
        }
    )


def test_object_uri_is_under_the_prefix_by_namespace_dataset_and_digest() -> None:
    assert object_uri("s3://lake", "ns", "big", "ab") == "s3://lake/ns/big/ab.parquet"
    assert object_uri("s3://lake/up/loads/", "ns", "big", "ab") == "s3://lake/up/loads/ns/big/ab.parquet"
    with pytest.raises(mlkube.InvalidSpec, match="s3://bucket"):
        object_uri("/tmp/x", "ns", "big", "ab")


def test_a_table_is_written_as_parquet_content_addressed(s3: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    bucket = s3.make_bucket("uploads")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3.secret_key)
    df = _table(50_000)
    assert len(df.to_csv(index=False).encode()) > 1_000_000  # too large for a ConfigMap
    uri = upload_table(df, f"s3://{bucket}/sdk", "team-a", "big", s3.endpoint, "us-east-1")
    assert uri.startswith(f"s3://{bucket}/sdk/team-a/big/") and uri.endswith(".parquet")
    back = pd.read_parquet(io.BytesIO(s3.get(uri.removeprefix("s3://"))))
    pd.testing.assert_frame_equal(back, df)
    # The same table again: the same key, nothing new.
    assert upload_table(df, f"s3://{bucket}/sdk", "team-a", "big", s3.endpoint, "us-east-1") == uri
    assert s3.listing(f"{bucket}/sdk") == [uri.removeprefix("s3://")]
    # Another table: another key.
    other = upload_table(df.head(10), f"s3://{bucket}/sdk", "team-a", "big", s3.endpoint, "us-east-1")
    assert other != uri


def test_wrong_credentials_fail_naming_the_store_and_never_the_secret(
    s3: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket = s3.make_bucket("locked")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-" + s3.secret_key[:8])
    with pytest.raises(mlkube.ApiError) as info:
        upload_table(_table(10), f"s3://{bucket}", "ns", "big", s3.endpoint, "us-east-1")
    assert info.value.reason == "UploadFailed" and s3.endpoint in info.value.message
    assert "wrong-" not in str(info.value)
    assert s3.listing(bucket) == []
