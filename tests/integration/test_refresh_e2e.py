"""Finding 13.5 end to end: a Dataset re-reads its source without a spec edit.

A URL source first answers 404 (SourceUnavailable), is fixed, and the Dataset
recovers by itself after the retry backoff; new data at the same URL is read on a
`mlkube.io/refresh` annotation; a pinned TrainingRun then shows Stale=True while a
following one trains again on the new contents.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from mlkube_operator import constants as C

from .helpers import condition, event_reasons, get_cr, kubectl, wait_condition, wait_for
from .test_training_e2e import apply, dataset, run

pytestmark = pytest.mark.cluster


def table(seed: int) -> str:
    return "x1,x2,label\n" + "".join(f"{i},{(i * seed) % 7 * 0.5},{i % 2}\n" for i in range(60))


@pytest.mark.timeout(900)
def test_dataset_recovers_refreshes_and_runs_follow_or_go_stale(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, data_dir: tuple[str, Path]
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    url, directory = data_dir
    lr = "sklearn.linear_model.LogisticRegression"
    apply(
        kc,
        namespace,
        dataset("web", {"url": f"{url}/data.csv"}, target="label"),
        run("pinned", "web", lr, {"max_iter": 300}),
        run("follower", "web", lr, {"max_iter": 300}, datasetPolicy="Follow"),
    )
    # Not there yet: SourceUnavailable, with the time of the next read in the message.
    ds = wait_condition(api, "datasets", namespace, "web", "Ready", ("False",), timeout=180)
    cond = condition(ds, "Ready")
    assert (
        cond is not None and cond["reason"] == "SourceUnavailable" and "reading again at" in cond["message"]
    )
    assert ds["status"]["failedReads"] == 1

    # Fixed at the source, no spec edit: the retry after the backoff makes it Ready.
    (directory / "data.csv").write_text(table(3))
    ds = wait_condition(api, "datasets", namespace, "web", "Ready", ("True",), timeout=240)
    first = ds["status"]["contentHash"]
    assert ds["status"]["read"] >= 1 and [v["contentHash"] for v in ds["status"]["versions"]] == [first]
    for name in ("pinned", "follower"):
        tr = wait_condition(api, "trainingruns", namespace, name, "Succeeded", timeout=240)
        assert condition(tr, "Succeeded")["status"] == "True", condition(tr, "Succeeded")  # type: ignore[index]
        assert tr["status"]["model"]["datasetHash"] == first
    wait_for(
        lambda: (
            (condition(get_cr(api, "trainingruns", namespace, "pinned"), C.STALE) or {}).get("status")
            == "False"
        ),
        60,
        "pinned run Stale=False",
    )

    # New data at the same URL: one annotation reads it again.
    (directory / "data.csv").write_text(table(5))
    kubectl(
        kc, "-n", namespace, "annotate", "dataset", "web", f"{C.ANNOTATION_REFRESH}=new-data", "--overwrite"
    )

    def refreshed() -> dict[str, Any] | None:
        obj = get_cr(api, "datasets", namespace, "web")
        status = (obj or {}).get("status") or {}
        return (
            obj if status.get("contentHash") not in (None, first) and not status.get("refreshing") else None
        )

    ds = wait_for(refreshed, 240, "the Dataset's new contentHash")
    second = ds["status"]["contentHash"]
    assert [v["contentHash"] for v in ds["status"]["versions"]] == [second, first]
    assert ds["status"]["refreshToken"] == "new-data"
    assert condition(ds, "Ready")["status"] == "True"  # type: ignore[index]

    def stale() -> dict[str, Any] | None:
        cond = condition(get_cr(api, "trainingruns", namespace, "pinned"), C.STALE)
        return cond if cond and cond["status"] == "True" else None

    cond = wait_for(stale, 120, "pinned run Stale=True")
    assert cond["reason"] == C.REASON_DATASET_CHANGED and second[:12] in cond["message"]
    pinned = get_cr(api, "trainingruns", namespace, "pinned")
    assert pinned is not None and pinned["status"]["model"]["datasetHash"] == first

    def followed() -> dict[str, Any] | None:
        obj = get_cr(api, "trainingruns", namespace, "follower")
        model = ((obj or {}).get("status") or {}).get("model") or {}
        return obj if model.get("datasetHash") == second else None

    follower = wait_for(followed, 300, "the following run's model on the new data")
    assert follower["status"]["followRound"] == 1
    assert follower["status"]["model"]["uri"].endswith("/1-f1/model.joblib")
    assert condition(follower, C.STALE)["status"] == "False"  # type: ignore[index]
    reasons = event_reasons(kc, namespace)
    assert {C.REASON_DATA_CHANGED, C.REASON_DATASET_CHANGED, C.REASON_FOLLOWING_DATASET} <= reasons

    # The same annotation value again reads nothing more.
    reads = ds["status"]["read"]
    kubectl(kc, "-n", namespace, "annotate", "dataset", "web", "unrelated=1", "--overwrite")
    time.sleep(5)  # the annotation's event has been reconciled by now
    ds = get_cr(api, "datasets", namespace, "web")
    assert ds is not None and ds["status"]["read"] == reads
