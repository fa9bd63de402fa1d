"""The local kubelet's pure rules, without a cluster: expansion, path mapping, quantities, images.

These are the fix-ups docs/devcluster.md promises; a change in any of them changes
what a workload sees, so each documented case is pinned here.
"""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import pytest

from mlkube_operator.devcluster.envs import expand, parse_quantity, resource_value
from mlkube_operator.devcluster.pods import image_repository
from mlkube_operator.devcluster.volumes import PathMap


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("--bind $(POD_IP)", "--bind 127.0.0.2"),
        ("$(POD_IP):$(PORT)", "127.0.0.2:8080"),
        ("$(UNDEFINED)/x", "$(UNDEFINED)/x"),
        ("$$(POD_IP)", "$(POD_IP)"),
        ("cost: $5", "cost: $5"),
        ("trailing $", "trailing $"),
        ("$(UNTERMINATED", "$(UNTERMINATED"),
    ],
)
def test_var_expansion_follows_kubernetes(text: str, expected: str) -> None:
    assert expand(text, {"POD_IP": "127.0.0.2", "PORT": "8080"}) == expected


def _map() -> PathMap:
    pm = PathMap()
    pm.add("/store", Path("/h/pvc"))
    pm.add("/store/models", Path("/h/other"))
    pm.add("/dev/termination-log", Path("/h/c/termination-log"))
    pm.add("/", Path("/h/root"))  # ignored: would rewrite every path
    return pm


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("/store", "/h/pvc"),
        ("/store/", "/h/pvc/"),
        ("/store/data.csv", "/h/pvc/data.csv"),
        ("/store/models/m.joblib", "/h/other/m.joblib"),
        ("/storefront", "/storefront"),
        ("--out=/store/x", "--out=/h/pvc/x"),
        ("KEY=/dev/termination-log", "KEY=/h/c/termination-log"),
        ("--out=relative/store", "--out=relative/store"),
        ("cat /store/x", "cat /store/x"),
        ("/etc/hosts", "/etc/hosts"),
        ("http://host/store/x", "http://host/store/x"),
    ],
)
def test_path_map_rewrites_only_leading_container_paths(value: str, expected: str) -> None:
    assert _map().rewrite(value) == expected


@pytest.mark.parametrize(
    ("quantity", "value"),
    [
        ("500m", Fraction(1, 2)),
        ("2", Fraction(2)),
        ("1Ki", Fraction(1024)),
        ("1e3", Fraction(1000)),
        ("1.5G", Fraction(1_500_000_000)),
    ],
)
def test_quantities(quantity: str, value: Fraction) -> None:
    assert parse_quantity(quantity) == value


def test_resource_field_ref_uses_limits_then_node_allocatable() -> None:
    container = {"resources": {"limits": {"memory": "256Mi"}, "requests": {"cpu": "250m"}}}
    node = {"cpu": "2", "memory": "8Gi"}
    assert resource_value(container, {"resource": "limits.memory", "divisor": "1Mi"}, node) == "256"
    assert resource_value(container, {"resource": "requests.cpu", "divisor": "1m"}, node) == "250"
    assert resource_value(container, {"resource": "limits.cpu"}, node) == "2"
    assert resource_value({}, {"resource": "requests.memory"}, node) == "0"


@pytest.mark.parametrize(
    ("image", "repository"),
    [
        ("ghcr.io/mlkube/mlkube:0.1.0", "ghcr.io/mlkube/mlkube"),
        ("ghcr.io/mlkube/mlkube", "ghcr.io/mlkube/mlkube"),
        ("ghcr.io/mlkube/mlkube@sha256:abc", "ghcr.io/mlkube/mlkube"),
        ("localhost:5000/mlkube/mlkube", "localhost:5000/mlkube/mlkube"),
        ("nginx:1.27", "nginx"),
    ],
)
def test_image_repository(image: str, repository: str) -> None:
    assert image_repository(image) == repository
