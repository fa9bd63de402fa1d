"""Generate crds/*.yaml (apiextensions.k8s.io/v1) from the pydantic API models.

pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3
schema. The translation lives here, in one place, so the models stay the single
source of truth: refs are inlined, `anyOf [X, null]` becomes `nullable`, closed
objects lose `additionalProperties: false` (the API server prunes unknown fields
instead), free-form maps keep unknown fields, and numeric exclusive bounds become
OpenAPI v3 booleans. `--check` fails when the committed files differ, so a model
change cannot ship with a stale CRD.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import sys
from pathlib import Path
from typing import Any

import yaml

from .api import KINDS, Kind
from .constants import CATEGORY, GROUP, VERSION

JSON = dict[str, Any]

# Validations the pydantic model validators enforce in the handler, repeated in the
# schema so the API server rejects the object before it is stored. The API server
# checks rules against `default: {}` before nested defaults apply, hence `!has(...)`.
_ONE_OF: dict[str, list[JSON]] = {
    "DatasetSource": [{"required": [k]} for k in ("builtin", "url", "path", "configMap", "s3", "sql")],
    "QualityGate": [{"required": ["minimum"]}, {"required": ["maximum"]}],
    "Parameter": [{"required": ["values"]}, {"required": ["type"]}],
    "GrantFrom": [{"required": ["namespace"]}, {"required": ["namespaceSelector"]}],
}
_CEL_RULES: dict[str, list[JSON]] = {
    "Parameter": [
        {
            "rule": "!has(self.low) || !has(self.high) || self.low < self.high",
            "message": "high must be greater than low",
            "fieldPath": ".high",
        },
        {
            "rule": "!has(self.log) || !self.log || !has(self.low) || self.low > 0.0",
            "message": "low must be greater than 0 on a log scale",
            "fieldPath": ".low",
        },
    ],
    "Strategy": [
        {
            "rule": "!has(self.type) || self.type != 'Canary' || (has(self.steps) && size(self.steps) > 0)",
            "message": "steps must list at least one step for the Canary strategy",
            "fieldPath": ".steps",
        }
    ],
    "MetricsSource": [
        {
            "rule": "!has(self.type) || self.type != 'Prometheus' || has(self.prometheusUrl)",
            "message": "prometheusUrl is required when type is Prometheus",
            "fieldPath": ".prometheusUrl",
        }
    ],
    "ModelGrantSpec": [
        {
            "rule": "(has(self.allTrainingRuns) && self.allTrainingRuns) != "
            "(has(self.trainingRuns) && size(self.trainingRuns) > 0)",
            "message": "exactly one of trainingRuns (non-empty) or allTrainingRuns: true must be set",
            "fieldPath": ".trainingRuns",
        }
    ],
    "LabelSelector": [
        {
            "rule": "(has(self.matchLabels) && size(self.matchLabels) > 0) || "
            "(has(self.matchExpressions) && size(self.matchExpressions) > 0)",
            "message": "an empty selector would grant every namespace; name them or select by label",
        }
    ],
    "OnDegradation": [
        {
            "rule": "!has(self.action) || self.action != 'Retrain' || has(self.retrainTemplate)",
            "message": "retrainTemplate is required when action is Retrain",
            "fieldPath": ".retrainTemplate",
        }
    ],
}
_DROP_KEYS = {"title", "$defs", "discriminator"}


def _resolve(node: Any, defs: JSON) -> Any:
    """Inline every $ref, keeping sibling keys (description, default) of the referrer."""
    if isinstance(node, list):
        return [_resolve(n, defs) for n in node]
    if not isinstance(node, dict):
        return node
    if "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        target = _resolve(copy.deepcopy(defs[name]), defs)
        target["x-mlkube-def"] = name
        for key, value in node.items():
            if key != "$ref":
                target[key] = _resolve(value, defs)
        return target
    return {k: _resolve(v, defs) for k, v in node.items()}


def _structural(node: Any, *, spec: bool) -> Any:
    """Rewrite one resolved JSON-Schema node into structural OpenAPI v3."""
    if isinstance(node, list):
        return [_structural(n, spec=spec) for n in node]
    if not isinstance(node, dict):
        return node
    node = dict(node)
    nullable = False
    if "anyOf" in node:
        variants = [v for v in node["anyOf"] if v.get("type") != "null"]
        if len(variants) != len(node["anyOf"]):
            nullable = True
        if len(variants) != 1:
            raise ValueError(f"cannot express anyOf with {len(variants)} non-null variants: {node}")
        merged = dict(variants[0])
        for key, value in node.items():
            if key != "anyOf":
                merged[key] = value
        node = merged
    def_name = node.pop("x-mlkube-def", None)
    for key in _DROP_KEYS:
        node.pop(key, None)
    if "const" in node:
        node["enum"] = [node.pop("const")]
    for bound, plain in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if bound in node and not isinstance(node[bound], bool):
            node[plain] = node.pop(bound)
            node[bound] = True
    if node.get("default", 0) is None:
        del node["default"]
    if nullable:
        node["nullable"] = True
    if node.get("type") == "object":
        extra = node.get("additionalProperties")
        if extra is False:
            del node["additionalProperties"]
        elif extra is True or (extra is None and "properties" not in node):
            node.pop("additionalProperties", None)
            node["x-kubernetes-preserve-unknown-fields"] = True
    if "properties" in node:
        required = set(node.get("required", []))
        props: JSON = {}
        for name, sub in node["properties"].items():
            converted = _structural(sub, spec=spec)
            if (
                spec
                and name not in required
                and "default" not in converted
                and not converted.get("nullable")
                and converted.get("type") == "object"
                and "properties" in converted
                and not converted.get("required")
            ):
                # Let the API server apply nested defaults when the whole block is omitted.
                converted["default"] = {}
            props[name] = converted
        node["properties"] = props
    for key in ("items", "additionalProperties"):
        if isinstance(node.get(key), dict):
            node[key] = _structural(node[key], spec=spec)
    if def_name in _ONE_OF:
        node["oneOf"] = _ONE_OF[def_name]
    if def_name in _CEL_RULES:
        node["x-kubernetes-validations"] = _CEL_RULES[def_name]
    if def_name == "Condition":
        node["required"] = sorted(set(node.get("required", [])) | {"type", "status"})
    return node


def _model_schema(model: Any, *, spec: bool) -> JSON:
    raw = model.model_json_schema(by_alias=True, mode="validation" if spec else "serialization")
    defs = raw.pop("$defs", {})
    raw["x-mlkube-def"] = model.__name__  # rules of the spec model itself (e.g. ModelGrantSpec)
    out: JSON = _structural(_resolve(raw, defs), spec=spec)
    return out


def _mark_condition_lists(node: Any) -> None:
    if isinstance(node, dict):
        conditions = node.get("properties", {}).get("conditions")
        if isinstance(conditions, dict) and conditions.get("type") == "array":
            conditions["x-kubernetes-list-type"] = "map"
            conditions["x-kubernetes-list-map-keys"] = ["type"]
        for value in node.values():
            _mark_condition_lists(value)
    elif isinstance(node, list):
        for value in node:
            _mark_condition_lists(value)


def build_crd(kind: Kind) -> JSON:
    """Return the CustomResourceDefinition of one kind as a plain dict (pure)."""
    spec_schema = _model_schema(kind.spec, spec=True)
    status_schema = _model_schema(kind.status, spec=False)
    _mark_condition_lists(status_schema)
    schema: JSON = {
        "type": "object",
        "description": kind.description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {"type": "string"},
            "kind": {"type": "string"},
            "metadata": {"type": "object"},
            "spec": spec_schema,
            "status": status_schema,
        },
    }
    columns = [
        {
            "name": c.name,
            "type": c.type,
            "jsonPath": c.json_path,
            **({"description": c.description} if c.description else {}),
            **({"priority": c.priority} if c.priority else {}),
        }
        for c in kind.columns
    ]
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{kind.plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "mlkube"},
        },
        "spec": {
            "group": GROUP,
            "scope": "Namespaced",
            "names": {
                "kind": kind.kind,
                "listKind": f"{kind.kind}List",
                "plural": kind.plural,
                "singular": kind.singular,
                "shortNames": list(kind.short_names),
                "categories": [CATEGORY],
            },
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "subresources": {"status": {}},
                    "additionalPrinterColumns": columns,
                    "schema": {"openAPIV3Schema": schema},
                }
            ],
        },
    }


def render(kind: Kind) -> str:
    header = "# Generated by `python -m mlkube_operator.crdgen` from mlkube_operator.api. Do not edit.\n"
    return header + yaml.safe_dump(build_crd(kind), sort_keys=False, width=120)


def crd_files() -> dict[str, str]:
    files = {f"{GROUP}_{kind.plural}.yaml": render(kind) for kind in KINDS}
    kustomization = {
        "apiVersion": "kustomize.config.k8s.io/v1beta1",
        "kind": "Kustomization",
        "resources": sorted(files),
    }
    files["kustomization.yaml"] = "# Generated by crdgen.\n" + yaml.safe_dump(kustomization, sort_keys=False)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mlkube_operator.crdgen", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", type=Path, default=Path("crds"), help="directory of the CRD files (crds/)")
    parser.add_argument("--check", action="store_true", help="exit 1 when the files differ from the models")
    args = parser.parse_args(argv)
    wanted = crd_files()
    if args.check:
        stale = []
        for name, text in wanted.items():
            path = args.out / name
            current = path.read_text() if path.exists() else ""
            if current != text:
                stale.append(name)
                sys.stdout.writelines(
                    difflib.unified_diff(
                        current.splitlines(True), text.splitlines(True), str(path), "generated"
                    )
                )
        extra = (
            sorted(p.name for p in args.out.glob("*.yaml") if p.name not in wanted)
            if args.out.exists()
            else []
        )
        for name in extra:
            print(f"crdgen: {args.out / name} is not generated by the models", file=sys.stderr)
        if stale or extra:
            print(
                f"crdgen: {len(stale) + len(extra)} CRD file(s) out of date; run `python -m mlkube_operator.crdgen`",
                file=sys.stderr,
            )
            return 1
        print(f"crdgen: {len(wanted)} CRD files up to date")
        return 0
    args.out.mkdir(parents=True, exist_ok=True)
    for name, text in wanted.items():
        (args.out / name).write_text(text)
        print(f"Wrote {args.out / name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
