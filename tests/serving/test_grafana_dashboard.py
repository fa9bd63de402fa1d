"""The Grafana dashboard's queries, run against a real Prometheus that scraped real model servers.

Every target of every panel (and every template variable's query) is taken from the
shipped JSON, its variables are substituted as Grafana would, and it is sent to a real
Prometheus scraping real `mlkube_serving` processes: a ModelDeployment `iris` with a
stable pod, a canary pod serving another model and a pod refusing a wrong digest (503),
a regressor `reg` and a pipeline with a categorical column `pipe`, all with
predictions, client errors and feedback. A query passes when it returns at least one
finite value *and* every metric it names exists in Prometheus: a typo hidden behind
`or` (as in the error-rate panels) still fails, as the self-check below shows. Panels
on the operator's own series are run by tests/integration/test_grafana_operator.py,
where a real operator and predictor pods on the dev cluster are scraped.
"""

from __future__ import annotations

import importlib.util
import re
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import numpy as np
import pytest
import yaml

from gitops.dashboard import (
    BUILTINS,
    DASHBOARD,
    Checker,
    dashboard,
    dashboard_problems,
    operator_panel,
    panels,
    substitute,
    variable_defaults,
)
from mlkube_operator.analysis.counts import parse_metrics, total
from mlkube_operator.analysis.verdict import input_drift

from .conftest import REPO, Artifact, ServerProc, start_server
from .test_prometheus import prometheus_scraping_targets

NAMESPACE = "test"
DEPLOYMENTS = ("iris", "reg", "pipe")
# Panels that only apply to one kind of model; every other panel must show data for each deployment.
APPLIES_TO = {
    "Accuracy from feedback": {"iris", "pipe"},
    "Regression error from feedback": {"reg"},
}


@dataclass
class Fleet:
    prom: str
    servers: dict[str, ServerProc]


@pytest.fixture(scope="module")
def fleet(artifacts: dict[str, Artifact], tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    tmp = tmp_path_factory.mktemp("grafana")
    servers = {
        "iris-stable-0": start_server("iris", artifacts["iris"], tmp),
        "iris-canary-0": start_server("iris", artifacts["lr"], tmp),  # another model: a canary
        "iris-broken-0": start_server("iris", artifacts["iris"], tmp, sha256="0" * 64),  # refuses: 503
        "reg-0": start_server("reg", artifacts["reg"], tmp),
        "pipe-0": start_server("pipe", artifacts["pipe"], tmp),
    }
    try:
        targets = [(s.port, {"namespace": NAMESPACE, "pod": pod}) for pod, s in servers.items()]
        with prometheus_scraping_targets(targets, tmp) as prom:
            for pod, s in servers.items():
                s.wait_live(120) if pod == "iris-broken-0" else s.wait_ready(120)  # a loaded machine is slow
            yield Fleet(prom, servers)
    finally:
        for s in servers.values():
            s.stop()


def send_traffic(fleet: Fleet, artifacts: dict[str, Artifact], round_: int) -> None:
    """One round: predictions with their true labels fed back, a client error, drifted iris rows."""
    iris, reg, pipe = artifacts["iris"], artifacts["reg"], artifacts["pipe"]
    with httpx.Client(timeout=10) as c:
        for pod in ("iris-stable-0", "iris-canary-0"):
            url = fleet.servers[pod].url
            ids = []
            for i in range(round_ % 10, 150, 15):
                r = c.post(f"{url}/v1/models/iris:predict", json={"instances": iris.x[i : i + 3].tolist()})
                assert r.status_code == 200, r.text
                ids.append({"id": r.json()["id"], "label": iris.y[i : i + 3].tolist()})
            drifted = {"instances": [[50.0, 50.0, 50.0, 50.0]] * 3}
            assert c.post(f"{url}/v1/models/iris:predict", json=drifted).status_code == 200
            assert c.post(f"{url}/v1/models/iris:predict", json={"instances": [[1, 2]]}).status_code == 400
            assert c.post(f"{url}/v2/models/iris/feedback", json={"feedback": ids}).status_code == 200
        broken = fleet.servers["iris-broken-0"].url
        r = c.post(f"{broken}/v1/models/iris:predict", json={"instances": iris.x[:2].tolist()})
        assert r.status_code == 503, r.text

        url, ids = fleet.servers["reg-0"].url, []
        for i in range(round_ % 10, 300, 30):
            r = c.post(f"{url}/v1/models/reg:predict", json={"instances": reg.x[i : i + 3].tolist()})
            assert r.status_code == 200, r.text
            ids.append({"id": r.json()["id"], "label": reg.y[i : i + 3].tolist()})
        assert c.post(f"{url}/v2/models/reg/feedback", json={"feedback": ids}).status_code == 200

        url, ids = fleet.servers["pipe-0"].url, []
        for i in range(round_ % 10, 400, 40):
            rows = pipe.x.iloc[i : i + 3]
            r = c.post(f"{url}/v1/models/pipe:predict", json={"instances": rows.to_dict(orient="records")})
            assert r.status_code == 200, r.text
            ids.append({"id": r.json()["id"], "label": np.asarray(pipe.y[i : i + 3]).tolist()})
        assert c.post(f"{url}/v2/models/pipe/feedback", json={"feedback": ids}).status_code == 200


@dataclass
class Scraped:
    checker: Checker
    problems: list[str]  # what the dashboard check found last, with traffic flowing


@pytest.fixture(scope="module")
def scraped(fleet: Fleet, artifacts: dict[str, Artifact]) -> Scraped:
    """Traffic until every panel shows data (bounded in time), checking after each round."""
    checker = Checker(fleet.prom)
    board = dashboard()
    deadline = time.monotonic() + 120
    round_ = 0
    problems: list[str] = ["no traffic sent"]
    while problems and time.monotonic() < deadline:
        send_traffic(fleet, artifacts, round_)
        round_ += 1
        time.sleep(1)
        if round_ >= 5:
            problems = dashboard_problems(
                checker, board, NAMESPACE, DEPLOYMENTS, APPLIES_TO, lambda p: not operator_panel(p)
            )
    return Scraped(checker, problems)


def test_every_panel_and_variable_shows_data_from_real_servers(scraped: Scraped) -> None:
    assert scraped.problems == [], "\n".join(scraped.problems)


def test_a_missing_metric_fails_the_same_check(
    scraped: Scraped, fleet: Fleet, artifacts: dict[str, Artifact]
) -> None:
    checker = scraped.checker
    send_traffic(fleet, artifacts, 0)  # fresh samples for the rates
    time.sleep(2)
    known = checker.names()
    values = {**BUILTINS, "window": "5m", "namespace": NAMESPACE, "deployment": "iris"}
    error_rate = next(p for p in panels(dashboard()) if p["title"] == "Error rate")["targets"][0]["expr"]
    good = substitute(error_rate, values)
    assert checker.problem(good, known) is None
    # A typo in the numerator only: `or 0 * total` still answers, so only the name check catches it.
    assert good.index('code=~"5.."') < good.index("or 0 *")  # the first selector is the numerator
    hidden = good.replace("mlkube_requests_total", "mlkube_request_total", 1)
    assert checker.query(hidden), "the broken query still returns data"
    assert "mlkube_request_total" in (checker.problem(hidden, known) or "")
    # A typo in the only selector: no data at all.
    plain = substitute('sum(rate(mlkube_feedback_totals{model="$deployment"}[$__rate_interval]))', values)
    assert checker.problem(plain, known) is not None
    # A real metric name but a label nobody exports: no series.
    assert checker.problem('sum(mlkube_model_ready{model="nosuchdeployment"})', known) == "returns no series"


def test_input_drift_panel_matches_the_operators_analysis(scraped: Scraped, fleet: Fleet) -> None:
    """The PSI the dashboard draws is the one status.lastAnalysis reports for the same counts."""
    board = dashboard()
    panel = next(p for p in panels(board) if p["title"] == "Input drift per feature (PSI)")
    values = {**BUILTINS, **variable_defaults(board), "namespace": NAMESPACE, "deployment": "iris"}
    counts = total(
        parse_metrics(httpx.get(f"{fleet.servers[pod].url}/metrics", timeout=5).text)
        for pod in ("iris-stable-0", "iris-canary-0")
    )
    time.sleep(2)  # a scrape after the counts were read; no traffic meanwhile
    drawn = {
        s["metric"]["feature"]: float(s["value"][1])
        for s in scraped.checker.query(substitute(panel["targets"][0]["expr"], values))
    }
    worst = input_drift(counts)
    assert worst is not None
    psi, feature = worst
    # increase() extrapolates each series a little; shares (and so PSI) barely move.
    assert drawn[feature] == pytest.approx(psi, rel=0.05)
    # The fixture drifts every feature about as much, so which one the panel ranks first
    # can differ by that extrapolation; its largest value may not.
    assert max(drawn.values()) == pytest.approx(psi, rel=0.15)
    assert psi > 0.25  # the drifted rows show


def test_dashboard_json_is_what_the_generator_writes() -> None:
    spec = importlib.util.spec_from_file_location(
        "grafana_dashboard", REPO / "scripts" / "grafana_dashboard.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert DASHBOARD.read_text() == module.render(), "run: python scripts/grafana_dashboard.py --write"


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["uid"] == "mlkube" and board["title"] == "mlkube"
    assert board["schemaVersion"] >= 36  # Grafana 9+: per-panel datasource objects
    assert board["id"] is None  # importable into any Grafana
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert (
        variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    )
    for name in ("namespace", "deployment"):
        assert variables[name]["type"] == "query"
        assert variables[name]["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
    every = panels(board)
    ids = [p["id"] for p in every]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    cells: set[tuple[int, int]] = set()
    for p in every:
        pos = p["gridPos"]
        assert pos["x"] >= 0 and pos["x"] + pos["w"] <= 24, p["title"]
        mine = {
            (x, y) for x in range(pos["x"], pos["x"] + pos["w"]) for y in range(pos["y"], pos["y"] + pos["h"])
        }
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
        if p["type"] == "row":
            continue
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, p["title"]
        assert p["targets"] and p.get("description"), p["title"]
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)), p["title"]
        for t in p["targets"]:
            assert t["datasource"] == p["datasource"] and t["expr"].strip(), p["title"]
            used = set(re.findall(r"\$\{?(\w+)", t["expr"])) - {"1"}
            assert used <= set(variables) | set(BUILTINS), (p["title"], used - set(variables))


def test_kustomize_ships_the_dashboard_as_a_sidecar_configmap() -> None:
    out = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "manifests" / "monitoring")],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    [cm] = [d for d in yaml.safe_load_all(out) if d and d["kind"] == "ConfigMap"]
    assert cm["metadata"]["name"] == "mlkube-grafana-dashboard"  # no hash suffix: apply replaces it
    assert cm["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert cm["data"] == {"mlkube.json": DASHBOARD.read_text()}
    # kubectl apply keeps the whole object in an annotation, limited to 256 KiB.
    assert len(DASHBOARD.read_bytes()) < 200_000
