"""Read YAML the way the Kubernetes API server will see it.

`kubectl`, Argo CD, Flux and the API server turn YAML into JSON with sigs.k8s.io/yaml,
which resolves plain (unquoted) scalars with go-yaml v2's YAML 1.1 rules. PyYAML's
rules are YAML 1.1 too, but not the same ones: to Go, `y`, `Y`, `n` and `N` are
booleans (to PyYAML they are strings), `1e3` is a float (a string to PyYAML), `0o17`
is an int and `1:30` a string (a string and 90 to PyYAML). A checker that reads a file
with PyYAML can therefore pass a manifest the API server rejects (`target: y` becomes
`target: true`), so `mlkube validate` reads documents with this module: PyYAML parses
and composes the node tree (anchors, aliases, tags, block styles), and plain scalars
are resolved here with go-yaml v2's table, keys turned into strings as
sigs.k8s.io/yaml does.

It also records every plain scalar whose reading surprises people: the YAML 1.1
booleans other than true/false (`y`, `yes`, `on`, `n`, `no`, `off` in any of their
spellings) and octal numbers written with a leading 0. When such a value sits where
validation fails, the error can say why the API server saw a boolean, and how to quote it.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

_PLAIN = "!mlkube/plain"  # tag given to plain scalars with no explicit tag, resolved below

_STR = "tag:yaml.org,2002:str"
_INT = "tag:yaml.org,2002:int"
_FLOAT = "tag:yaml.org,2002:float"
_BOOL = "tag:yaml.org,2002:bool"
_NULL = "tag:yaml.org,2002:null"
_MAP = "tag:yaml.org,2002:map"
_SEQ = "tag:yaml.org,2002:seq"
_MERGE = "<<"

# go-yaml v2 resolve.go: resolveMapList.
_TRUE = ("y", "Y", "yes", "Yes", "YES", "true", "True", "TRUE", "on", "On", "ON")
_FALSE = ("n", "N", "no", "No", "NO", "false", "False", "FALSE", "off", "Off", "OFF")
_MAPPED: dict[str, Any] = {
    **dict.fromkeys(_TRUE, True),
    **dict.fromkeys(_FALSE, False),
    **dict.fromkeys(("", "~", "null", "Null", "NULL"), None),
    **dict.fromkeys((".nan", ".NaN", ".NAN"), math.nan),
    **dict.fromkeys((".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"), math.inf),
    **dict.fromkeys(("-.inf", "-.Inf", "-.INF"), -math.inf),
}
_SURPRISING_BOOLS = frozenset(_TRUE + _FALSE) - {"true", "True", "TRUE", "false", "False", "FALSE"}
_YAML_STYLE_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")
_GO_FLOAT = re.compile(r"^[-+]?(\.[0-9]+|[0-9]+\.?[0-9]*)([eE][-+]?[0-9]+)?$")
_GO_OCTAL = re.compile(r"^[-+]?0[0-7]+$")
_GO_PREFIXED = re.compile(r"^[-+]?0([xX][0-9a-fA-F]+|[oO][0-7]+|[bB][01]+)$")
_GO_DECIMAL = re.compile(r"^[-+]?[0-9]+$")
_TIMESTAMP = re.compile(r"^[0-9]{4}-[0-9]{1,2}-[0-9]{1,2}([Tt ].*)?$")
_INT64 = (-(2**63), 2**63 - 1)
_UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Surprise:
    """A plain scalar the API server reads differently from what it looks like."""

    path: str  # as in validation messages: spec.split.stratify, spec.features[0]
    text: str
    value: Any
    key: bool = False  # the scalar is a mapping key (sigs.k8s.io/yaml then spells it "true")

    def explain(self) -> str:
        shown = "true" if self.value is True else "false" if self.value is False else repr(self.value)
        what = "key" if self.key else ""
        return (
            f"the unquoted {what}{' ' if what else ''}{self.text} is read as {shown} by the "
            f'Kubernetes API server (YAML 1.1, as kubectl parses it); write "{self.text}" if you mean the text'
        )


@dataclass
class Document:
    value: Any
    surprises: list[Surprise] = field(default_factory=list)


class _Loader(yaml.SafeLoader):
    """PyYAML's parser and composer; every plain untagged scalar is left for go_scalar()."""

    def resolve(self, kind: Any, value: Any, implicit: Any) -> Any:
        if kind is yaml.ScalarNode and implicit[0]:
            return _PLAIN
        return super().resolve(kind, value, implicit)  # type: ignore[no-untyped-call]


def _parse_go_int(text: str) -> int | None:
    """strconv.ParseInt(text, 0, 64), then ParseUint: decimal, 0x, 0o, 0b and leading-0 octal."""
    if _GO_DECIMAL.match(text) and not _GO_OCTAL.match(text):
        if text.lstrip("+-").startswith("0") and len(text.lstrip("+-")) > 1:
            return None  # 08, 09: not octal, not decimal to Go
        value = int(text, 10)
    elif _GO_OCTAL.match(text):
        sign = -1 if text.startswith("-") else 1
        value = sign * int(text.lstrip("+-"), 8)
    elif _GO_PREFIXED.match(text):
        value = int(text, 0)
    else:
        return None
    if _INT64[0] <= value <= _INT64[1] or (0 <= value <= _UINT64_MAX and not text.startswith("-")):
        return value
    return None


def go_scalar(text: str) -> Any:
    """What go-yaml v2 makes of a plain scalar (resolve.go's resolve() with an empty tag)."""
    if text in _MAPPED:
        return _MAPPED[text]
    hint = text[0]
    if hint == ".":
        if _GO_FLOAT.match(text):
            return float(text)
        return text
    if hint in "+-0123456789":
        if _TIMESTAMP.match(text):
            return text  # a timestamp: JSON carries it as a string
        plain = text.replace("_", "")
        as_int = _parse_go_int(plain)
        if as_int is not None:
            return as_int
        if _YAML_STYLE_FLOAT.match(plain):
            return float(plain)
    return text


def _key_text(key: Any) -> str:
    """sigs.k8s.io/yaml turns non-string keys into JSON strings."""
    if isinstance(key, str):
        return key
    if key is True:
        return "true"
    if key is False:
        return "false"
    if key is None:
        return "null"
    if isinstance(key, float):
        return repr(key) if not key.is_integer() else str(int(key))
    return str(key)


class _Builder:
    def __init__(self) -> None:
        self.surprises: list[Surprise] = []

    def scalar(self, node: yaml.ScalarNode, path: str) -> Any:
        text = str(node.value)
        if node.tag == _PLAIN:
            value = go_scalar(text)
            if text in _SURPRISING_BOOLS or (
                isinstance(value, int) and not isinstance(value, bool) and _GO_OCTAL.match(text)
            ):
                self.surprises.append(Surprise(path, text, value))
            return value
        if node.tag in (_STR, "tag:yaml.org,2002:binary", "tag:yaml.org,2002:timestamp"):
            return text
        if node.tag in (_INT, _FLOAT, _BOOL, _NULL):
            value = go_scalar(text)
            if node.tag == _NULL:
                return None
            return value
        return text  # an unknown tag: go-yaml keeps the text

    def build(self, node: yaml.Node, path: str) -> Any:
        if isinstance(node, yaml.ScalarNode):
            return self.scalar(node, path)
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, f"{path}[{i}]") for i, item in enumerate(node.value)]
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            merged: dict[str, Any] = {}
            for key_node, value_node in node.value:
                if (
                    isinstance(key_node, yaml.ScalarNode)
                    and key_node.tag == _PLAIN
                    and key_node.value == _MERGE
                ):
                    sources = value_node.value if isinstance(value_node, yaml.SequenceNode) else [value_node]
                    for source in sources:
                        built = self.build(source, path)
                        if isinstance(built, dict):
                            for k, v in built.items():
                                merged.setdefault(k, v)
                    continue
                key_builder = _Builder()
                key = _key_text(key_builder.build(key_node, path))
                here = f"{path}.{key}" if path else key
                self.surprises += [Surprise(here, k.text, k.value, key=True) for k in key_builder.surprises]
                out[key] = self.build(value_node, here)
            return {**merged, **out}
        raise TypeError(f"unexpected YAML node {type(node).__name__}")  # pragma: no cover


def load_all(text: str) -> Iterator[Document]:
    """Each document of a YAML stream as the API server would read it (None for empty ones)."""
    loader = _Loader(text)
    try:
        while loader.check_node():
            node = loader.get_node()
            builder = _Builder()
            yield Document(builder.build(node, "") if node is not None else None, builder.surprises)
    finally:
        loader.dispose()
