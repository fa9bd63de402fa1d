"""The API models, the CRDs generated from them and the examples agree.

The CRD schemas are checked the way the API server would: structural-schema rules
walked node by node, and every example validated by a real JSON-schema validator
against the generated openAPIV3Schema. Invalid specs under tests/data/invalid must
fail with a message naming the field, both in pydantic (the handler's check) and,
where the schema can express it, in the CRD.
"""

from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from mlkube_operator.api import KINDS, Kind
from mlkube_operator.api.validation import InvalidSpecError, parse_model
from mlkube_operator.crdgen import build_crd, crd_files

ROOT = Path(__file__).resolve().parents[2]
KIND_BY_NAME = {k.kind: k for k in KINDS}
BUILTIN_SHORT_NAMES = {
    "cs", "cm", "ep", "ev", "limits", "ns", "no", "pvc", "pv", "po", "rc", "quota", "sa", "svc",
    "crd", "crds", "deploy", "ds", "rs", "sts", "hpa", "cj", "csr", "ing", "netpol", "pdb", "psp",
    "pc", "sc", "ingclass", "vac",
}  # fmt: skip


def _schema(kind: Kind) -> dict[str, Any]:
    crd = build_crd(kind)
    schema: dict[str, Any] = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    return schema


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        out.append((path, node))
        for key in ("properties",):
            for name, sub in node.get(key, {}).items():
                out.extend(_walk(sub, f"{path}.{name}"))
        if isinstance(node.get("items"), dict):
            out.extend(_walk(node["items"], f"{path}[]"))
        if isinstance(node.get("additionalProperties"), dict):
            out.extend(_walk(node["additionalProperties"], f"{path}{{}}"))
    return out


def structural_problems(schema: dict[str, Any]) -> list[str]:
    """Problems that would make the API server reject the schema as non-structural."""
    problems = []
    for path, node in _walk(schema):
        where = path or "<root>"
        for banned in ("$ref", "$defs", "definitions", "const", "title"):
            if banned in node:
                problems.append(f"{where}: has {banned}")
        if node.get("additionalProperties") is False:
            problems.append(f"{where}: additionalProperties: false")
        if "additionalProperties" in node and "properties" in node:
            problems.append(f"{where}: both properties and additionalProperties")
        # Kubernetes allows an untyped node only with int-or-string or preserve-unknown-fields.
        untyped_ok = node.get("x-kubernetes-int-or-string") or node.get(
            "x-kubernetes-preserve-unknown-fields"
        )
        if not untyped_ok and "type" not in node:
            problems.append(f"{where}: no type")
        for bound in ("exclusiveMinimum", "exclusiveMaximum"):
            if bound in node and not isinstance(node[bound], bool):
                problems.append(f"{where}: {bound} is not a boolean")
        for junction in ("anyOf", "oneOf", "allOf"):
            for variant in node.get(junction, []):
                if {"type", "properties", "items", "nullable", "default"} & set(variant):
                    problems.append(f"{where}: {junction} variant sets a type/shape: {variant}")
                if variant.get("type") == "null":
                    problems.append(f"{where}: {junction} with null (use nullable)")
        if "default" in node and node.get("type") == "object" and not isinstance(node["default"], dict):
            problems.append(f"{where}: object default is not an object")
    return problems


def to_jsonschema(node: Any) -> Any:
    """OpenAPI v3 (Kubernetes flavour) -> JSON Schema draft 4 (boolean exclusive bounds)."""
    if isinstance(node, list):
        return [to_jsonschema(n) for n in node]
    if not isinstance(node, dict):
        return node
    out = {
        k: to_jsonschema(v) for k, v in node.items() if not k.startswith("x-kubernetes") and k != "nullable"
    }
    if node.get("nullable") and "type" in node:
        out["type"] = [node["type"], "null"]
    if node.get("x-kubernetes-preserve-unknown-fields") and "properties" not in node:
        out.pop("additionalProperties", None)
    return out


def schema_errors(doc: dict[str, Any]) -> list[str]:
    kind = KIND_BY_NAME[doc["kind"]]
    validator = jsonschema.Draft4Validator(to_jsonschema(_schema(kind)))
    return [
        ".".join(str(p) for p in err.absolute_path) + ": " + err.message
        for err in sorted(validator.iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    ]


def _load(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


EXAMPLES = sorted((ROOT / "examples").rglob("*.yaml"))
INVALID = sorted((ROOT / "tests" / "data" / "invalid").glob("*.yaml"))


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_generated_schema_is_structural(kind: Kind) -> None:
    assert structural_problems(_schema(kind)) == []


def test_structural_check_catches_violations() -> None:
    bad = copy.deepcopy(_schema(KINDS[0]))
    bad["properties"]["spec"]["properties"]["x"] = {"anyOf": [{"type": "string"}, {"type": "null"}]}
    bad["properties"]["spec"]["additionalProperties"] = False
    problems = structural_problems(bad)
    assert any("x: no type" in p for p in problems)
    assert any("additionalProperties: false" in p for p in problems)


@pytest.mark.parametrize("kind", KINDS, ids=lambda k: k.kind)
def test_crd_names_and_conventions(kind: Kind) -> None:
    crd = build_crd(kind)
    names = crd["spec"]["names"]
    assert crd["metadata"]["name"] == f"{kind.plural}.mlkube.io"
    assert crd["spec"]["scope"] == "Namespaced"
    assert names["categories"] == ["mlkube"]
    assert not set(names["shortNames"]) & BUILTIN_SHORT_NAMES
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}}
    columns = {c["name"]: c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert kind.summary_condition in columns and "Age" in columns
    conditions = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]["conditions"]
    assert conditions["x-kubernetes-list-type"] == "map"
    assert conditions["x-kubernetes-list-map-keys"] == ["type"]
    assert {"type", "status"} <= set(conditions["items"]["required"])
    for field in ("reason", "message", "lastTransitionTime", "observedGeneration"):
        assert field in conditions["items"]["properties"]


def test_short_names_are_unique_across_kinds() -> None:
    short = [s for k in KINDS for s in k.short_names]
    assert len(short) == len(set(short))


def test_schema_defaults_cascade_into_nested_blocks() -> None:
    spec = _schema(KIND_BY_NAME["TrainingRun"])["properties"]["spec"]["properties"]
    assert spec["split"]["default"] == {}
    assert spec["split"]["properties"]["testFraction"]["default"] == 0.2
    assert spec["backoffLimit"]["default"] == 1
    md = _schema(KIND_BY_NAME["ModelDeployment"])["properties"]["spec"]["properties"]
    assert md["strategy"]["properties"]["type"]["default"] == "Rolling"
    assert md["monitoring"]["default"] == {}


def test_crdgen_check_passes_on_committed_files() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "mlkube_operator.crdgen", "--check", "--out", str(ROOT / "crds")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_crdgen_check_fails_on_drift(tmp_path: Path) -> None:
    for name, text in crd_files().items():
        (tmp_path / name).write_text(text)
    victim = sorted(tmp_path.glob("mlkube.io_*.yaml"))[0]
    victim.write_text(victim.read_text().replace("shortNames", "shortnames"))
    result = subprocess.run(
        [sys.executable, "-m", "mlkube_operator.crdgen", "--check", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 1
    assert "out of date" in result.stderr and victim.name in result.stdout


def test_every_kind_has_an_example() -> None:
    kinds = {d["kind"] for p in EXAMPLES for d in _load(p)}
    assert kinds >= {"Dataset", "TrainingRun", "ModelDeployment"}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: str(p.relative_to(ROOT)))
def test_examples_validate_against_crd_and_models(path: Path) -> None:
    for doc in _load(path):
        if doc.get("apiVersion") != "mlkube.io/v1alpha1":
            continue
        assert schema_errors(doc) == []
        kind = KIND_BY_NAME[doc["kind"]]
        parse_model(kind.spec, doc["spec"])


def _expectations(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        if line.startswith("# ") and ":" in line:
            key, _, value = line[2:].partition(":")
            out[key.strip()] = value.strip()
    return out


@pytest.mark.parametrize("path", INVALID, ids=lambda p: p.stem)
def test_invalid_specs_are_rejected_naming_the_field(path: Path) -> None:
    expect = _expectations(path)
    field, schema_verdict = expect["field"], expect["schema"]
    (doc,) = _load(path)
    kind = KIND_BY_NAME[doc["kind"]]
    with pytest.raises(InvalidSpecError) as caught:
        parse_model(kind.spec, doc.get("spec", {}))
    assert field in caught.value.fields, caught.value.message
    assert caught.value.message.startswith(field) or f"; {field}" in caught.value.message
    errors = schema_errors(doc)
    if schema_verdict == "reject":
        # jsonschema names the path without the root: spec.split.testFraction -> "spec.split.testFraction"
        schema_field = field.replace("[", ".").replace("]", "")
        assert any(
            e.startswith(schema_field) or e.startswith(schema_field.rsplit(".", 1)[0]) for e in errors
        ), errors
    elif schema_verdict == "cel":
        # Enforced by an x-kubernetes-validations rule, evaluated only by the API server.
        assert errors == []
        assert "x-kubernetes-validations" in str(_schema(kind))
    else:
        assert errors == [], "the schema cannot express this rule; only the handler rejects it"
