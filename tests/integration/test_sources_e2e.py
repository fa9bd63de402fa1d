"""s3 and sql Dataset sources end to end: Secrets reach the profile Job's pod, never status.

SeaweedFS and PostgreSQL (tests/servers.py) listen on the dev cluster's node address,
where pods reach the machine. The examples in examples/data-sources/ are applied with
their endpoint, URL and credentials pointed at these servers; a wrong secret ends in
SourceUnavailable whose message and Events carry no secret.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from servers import PostgresServer, S3Server, postgres_server, s3_server

from .helpers import condition, kubectl, wait_condition
from .test_training_e2e import apply

pytestmark = pytest.mark.cluster
ROOT = Path(__file__).resolve().parents[2]
TABLE = pd.DataFrame(
    {
        "plan": ["basic", "pro", "team", "basic", "pro"] * 30,
        "tenure": list(range(150)),
        "spend": [round(10.5 + i * 0.75, 2) for i in range(150)],
        "churned": [i % 3 == 0 for i in range(150)],
    }
)


@pytest.fixture(scope="module")
def node_s3(dev_cluster: Any) -> Iterator[S3Server]:
    with s3_server(dev_cluster.node_ip) as server:
        yield server


@pytest.fixture(scope="module")
def node_pg(dev_cluster: Any) -> Iterator[PostgresServer]:
    with postgres_server(dev_cluster.node_ip) as server:
        yield server


def example(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((ROOT / "examples" / "data-sources" / name).read_text()) if d]


def test_s3_and_sql_examples_profile_in_the_cluster_with_one_hash(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, node_s3: S3Server, node_pg: PostgresServer
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    bucket = node_s3.make_bucket("lake")
    frame = TABLE.assign(churned=TABLE["churned"].map({True: "yes", False: "no"}))
    for i, part in enumerate((frame.iloc[:70], frame.iloc[70:])):
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pandas(part.reset_index(drop=True), preserve_index=False), buf)
        node_s3.put(f"{bucket}/churn/2026/part-{i}.parquet", buf.getvalue())
    node_pg.copy_frame("churn", frame.assign(customer_id=range(150)), {
        "plan": "text", "tenure": "bigint", "spend": "numeric(10,2)", "churned": "text", "customer_id": "bigint",
    })  # fmt: skip

    s3_docs, sql_docs = example("s3-parquet.yaml"), example("sql.yaml")
    secret, ds = s3_docs
    secret["stringData"] = {
        "AWS_ACCESS_KEY_ID": node_s3.access_key,
        "AWS_SECRET_ACCESS_KEY": node_s3.secret_key,
    }
    ds["spec"]["source"]["s3"]["endpoint"] = node_s3.endpoint
    pg_secret, sql_ds = sql_docs
    pg_secret["stringData"] = {"url": node_pg.url()}
    wrong = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "wrong"},
        "stringData": {"url": node_pg.url(password="WrongPassword0123")},
    }
    denied = json.loads(json.dumps(sql_ds))
    denied["metadata"]["name"] = "churn-denied"
    denied["spec"]["source"]["sql"]["connectionSecret"] = {"name": "wrong", "key": "url"}
    apply(kc, namespace, secret, ds, pg_secret, sql_ds, wrong, denied)

    hashes = {}
    for name in ("churn-lake", "churn-sql"):
        obj = wait_condition(api, "datasets", namespace, name, "Ready", timeout=300)
        assert condition(obj, "Ready")["status"] == "True", condition(obj, "Ready")  # type: ignore[index]
        assert obj["status"]["rows"] == 150
        hashes[name] = obj["status"]["contentHash"]
        assert obj["status"]["nextReadTime"] is not None  # the examples refresh on an interval
    assert hashes["churn-lake"] == hashes["churn-sql"]

    obj = wait_condition(api, "datasets", namespace, "churn-denied", "Ready", timeout=300)
    cond = condition(obj, "Ready")
    assert cond is not None and (cond["status"], cond["reason"]) == ("False", "SourceUnavailable"), cond
    assert "access denied" in cond["message"] and node_pg.host in cond["message"]
    everything = json.dumps(obj) + kubectl(kc, "-n", namespace, "get", "events", "-o", "json")
    for secret_value in ("WrongPassword0123", node_pg.password, node_s3.secret_key):
        assert secret_value not in everything
