"""Read the model servers' own /metrics (the PodScrape source of a ModelDeployment).

Scraping the pods directly needs nothing but the pods' IPs, so monitoring works on a
cluster without Prometheus; the operator keeps the history it needs in memory and
derives window deltas from the servers' cumulative counters.
"""

from __future__ import annotations

import logging
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from .kube import Kube

log = logging.getLogger(__name__)
JSON = dict[str, Any]


def _fetch(url: str, timeout: float) -> str | None:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            body: bytes = resp.read()
            return body.decode("utf-8", errors="replace")
    except OSError as err:
        log.info("Cannot scrape %s: %s", url, err)
        return None


def scrape_pods(kube: Kube, namespace: str, selector: str, port: int, timeout: float = 3.0) -> dict[str, str]:
    """`/metrics` text of every running pod matching `selector`, keyed by pod uid."""
    targets: dict[str, str] = {}
    for pod in kube.list_pods(namespace, selector):
        meta, status = pod.get("metadata") or {}, pod.get("status") or {}
        if meta.get("deletionTimestamp") or status.get("phase") != "Running" or not status.get("podIP"):
            continue
        targets[str(meta.get("uid"))] = f"http://{status['podIP']}:{port}/metrics"
    if not targets:
        return {}
    with ThreadPoolExecutor(max_workers=min(8, len(targets))) as pool:
        texts = dict(zip(targets, pool.map(lambda url: _fetch(url, timeout), targets.values()), strict=True))
    return {uid: text for uid, text in texts.items() if text is not None}
