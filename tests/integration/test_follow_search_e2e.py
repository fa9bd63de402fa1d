"""datasetPolicy Follow with spec.search on the dev cluster: new data, a new search round.

A Dataset reads a CSV that the test serves on the node's address; a TrainingRun with a
two-trial grid search and `datasetPolicy: Follow` searches and refits. New data at the
same URL, read on the `mlkube.io/refresh` annotation, starts a second round: its own
Indexed Job (`<run>-search-1-f1`), its trials and trial table next to the round's
model (`1-f1/`), the best trial refitted on the new contents; the first model is kept
in status until then.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from mlkube_operator import constants as C

from .helpers import condition, event_reasons, get_cr, kubectl, wait_condition, wait_for
from .test_training_e2e import apply, dataset, run

pytestmark = pytest.mark.cluster


def table(seed: int) -> str:
    return "x1,x2,label\n" + "".join(f"{i},{(i * seed) % 7 * 0.5},{(i // 3 + seed) % 2}\n" for i in range(90))


@pytest.mark.timeout(900)
def test_a_following_search_searches_again_on_new_data(
    dev_cluster: Any, namespace: str, mlkube_operator: Any, data_dir: tuple[str, Path]
) -> None:
    kc, api = dev_cluster.kubeconfig, dev_cluster.api_client
    url, directory = data_dir
    (directory / "data.csv").write_text(table(3))
    search = {
        "type": "Grid",
        "metric": "accuracy",
        "parallelism": 2,
        "space": {"C": {"values": [0.1, 1.0]}},
    }
    apply(
        kc,
        namespace,
        dataset("web", {"url": f"{url}/data.csv"}, target="label"),
        run("follower", "web", "sklearn.linear_model.LogisticRegression", {"max_iter": 300},
            datasetPolicy="Follow", search=search),
    )  # fmt: skip
    tr = wait_condition(api, "trainingruns", namespace, "follower", "Succeeded", timeout=480)
    assert condition(tr, "Succeeded")["status"] == "True", condition(tr, "Succeeded")  # type: ignore[index]
    first = tr["status"]["model"]
    assert first["uri"].endswith("/1/model.joblib") and tr["status"].get("followRound", 0) == 0
    assert tr["status"]["search"]["trials"] == 2

    (directory / "data.csv").write_text(table(5))
    kubectl(
        kc, "-n", namespace, "annotate", "dataset", "web", f"{C.ANNOTATION_REFRESH}=new-data", "--overwrite"
    )

    def followed() -> dict[str, Any] | None:
        obj = get_cr(api, "trainingruns", namespace, "follower")
        status = (obj or {}).get("status") or {}
        model = status.get("model") or {}
        done = (condition(obj, "Succeeded") or {}).get("status") == "True"
        return obj if done and model.get("datasetHash") not in (None, first["datasetHash"]) else None

    tr = wait_for(followed, 480, "the following run's model from a second search on the new data")
    ds = get_cr(api, "datasets", namespace, "web")
    assert ds is not None and tr["status"]["model"]["datasetHash"] == ds["status"]["contentHash"]
    assert tr["status"]["followRound"] == 1
    assert tr["status"]["model"]["uri"].endswith("/1-f1/model.joblib")
    summary = tr["status"]["search"]
    assert summary["trials"] == 2 and summary["succeeded"] == 2
    assert "/1-f1/search/trials.json" in summary["trialsUri"]
    assert "best of 2 trials" in condition(tr, "Succeeded")["message"]  # type: ignore[index]

    jobs = json.loads(kubectl(kc, "-n", namespace, "get", "jobs", "-o", "json"))["items"]
    by_name = {j["metadata"]["name"]: j for j in jobs}
    round_search = by_name["follower-search-1-f1"]
    assert round_search["spec"]["completionMode"] == "Indexed" and round_search["spec"]["completions"] == 2
    args = round_search["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[0] == "trial" and args[args.index("--follow-round") + 1] == "1"
    assert {"follower-search-1", "follower-train-1", "follower-train-1-f1"} <= set(by_name)
    assert C.REASON_FOLLOWING_DATASET in event_reasons(kc, namespace)
