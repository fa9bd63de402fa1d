"""The SDK's CLI verbs: registered on `mlkube`, and their tables fit the terminal."""

from __future__ import annotations

import subprocess
import sys

from mlkube.cli import table
from mlkube_operator.cli import build_parser


def test_the_sdk_verbs_are_on_the_mlkube_command() -> None:
    parser = build_parser()
    args = parser.parse_args(["predict", "iris", "-f", "rows.csv", "-n", "team"])
    assert (args.deployment, args.file, args.namespace) == ("iris", "rows.csv", "team")
    assert parser.parse_args(["compare", "a", "b"]).runs == ["a", "b"]
    assert parser.parse_args(["logs", "a", "--tail", "5"]).tail == 5
    assert parser.parse_args(["runs", "--metric", "r2"]).metric == "r2"


def test_table_aligns_columns_and_drops_those_past_the_width() -> None:
    rows = [["iris-rf", 0.966666, None], ["iris-lr-long-name", 1.0, "x" * 60]]
    text = table(rows, ["RUN", "ACCURACY", "NOTE"], width=200)
    lines = text.splitlines()
    assert lines[0].split() == ["RUN", "ACCURACY", "NOTE"]
    assert lines[1].split() == ["iris-rf", "0.9667"]  # floats to 4 significant digits, None empty
    assert lines[2].endswith("x" * 40)  # long cells cut to 40 characters
    narrow = table(rows, ["RUN", "ACCURACY", "NOTE"], width=30)
    assert all(len(line) <= 30 for line in narrow.splitlines())
    assert "NOTE" not in narrow and "ACCURACY" in narrow


def test_without_the_sdk_package_the_command_still_builds() -> None:
    """As in the images: the entry point is registered but the mlkube package is not installed."""
    code = (
        "import sys; sys.modules['mlkube'] = None\n"
        "from mlkube_operator.cli import build_parser\n"
        "names = build_parser()._subparsers._group_actions[0].choices\n"
        "assert 'validate' in names and 'predict' not in names, sorted(names)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
