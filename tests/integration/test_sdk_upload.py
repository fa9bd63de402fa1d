"""A table larger than a ConfigMap, uploaded by the SDK to S3-compatible storage, becomes a
Dataset the cluster profiles; without `upload` it is refused before anything is written.

SeaweedFS listens on the dev cluster's node address so the profile Job's pod reaches it;
the notebook side writes with the user's AWS_* variables, the Job reads with the Secret.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pandas as pd
import pytest

import mlkube
from servers import S3Server, s3_server

from .helpers import kubectl

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def node_s3(dev_cluster: Any) -> Iterator[S3Server]:
    with s3_server(dev_cluster.node_ip) as server:
        yield server


def test_a_large_table_is_uploaded_and_profiled_in_the_cluster(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, node_s3: S3Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    sdk = mlkube.connect(namespace=namespace, kubeconfig=dev_cluster.kubeconfig)
    rng = np.random.default_rng(1)
    rows = 40_000
    df = pd.DataFrame({f"x{i}": rng.normal(size=rows) for i in range(5)})
    df["y"] = (df["x0"] + rng.normal(scale=0.5, size=rows) > 0).astype(int)
    size = len(df.to_csv(index=False).encode())
    assert size > 1_000_000

    with pytest.raises(mlkube.DataTooLarge, match="upload="):
        mlkube.Dataset.from_dataframe(df, name="big", target="y")
    assert (
        kubectl(dev_cluster.kubeconfig, "-n", namespace, "get", "configmaps,datasets", "-o", "name").count(
            "big"
        )
        == 0
    )  # nothing was written

    bucket = node_s3.make_bucket("uploads")
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "upload-keys"},
        "stringData": {"AWS_ACCESS_KEY_ID": node_s3.access_key, "AWS_SECRET_ACCESS_KEY": node_s3.secret_key},
    }
    kubectl(dev_cluster.kubeconfig, "-n", namespace, "apply", "-f", "-", stdin=json.dumps(secret))
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", node_s3.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", node_s3.secret_key)
    ds = mlkube.Dataset.from_dataframe(
        df,
        name="big",
        target="y",
        upload=f"s3://{bucket}/sdk",
        endpoint=node_s3.endpoint,
        credentials_secret="upload-keys",
        sess=sdk,
    ).wait(timeout=300, progress=False)

    source = ds.get()["spec"]["source"]["s3"]
    assert source["uri"].startswith(f"s3://{bucket}/sdk/{namespace}/big/") and source["format"] == "parquet"
    assert source["credentialsSecret"] == {"name": "upload-keys"} and source["endpoint"] == node_s3.endpoint
    assert ds.status.rows == rows and ds.status.columns == 6
    assert node_s3.listing(f"{bucket}/sdk") == [source["uri"].removeprefix("s3://")]
    run = mlkube.train(ds, "sklearn.linear_model.LogisticRegression", session=sdk).wait(600, progress=False)
    assert run.metrics["accuracy"] > 0.7
