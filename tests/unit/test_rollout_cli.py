"""`mlkube rollout`: the request it writes and the command line it accepts."""

from __future__ import annotations

import pytest

from mlkube_operator import constants as C
from mlkube_operator.cli import build_parser
from mlkube_operator.rollout import new_request_id, request_patch


def test_the_request_is_two_annotations_with_a_fresh_id() -> None:
    a, b = new_request_id(), new_request_id()
    assert a != b
    patch = request_patch("promote", a)
    assert patch == {"metadata": {"annotations": {C.ANNOTATION_ACTION: "promote", C.ANNOTATION_ACTION_ID: a}}}
    with pytest.raises(ValueError, match="unknown action"):
        request_patch("delete", a)


def test_command_line() -> None:
    args = build_parser().parse_args(["rollout", "unpin", "iris", "-n", "ml"])
    assert (args.action, args.deployment, args.namespace) == ("unpin", "iris", "ml")
    with pytest.raises(SystemExit):
        build_parser().parse_args(["rollout", "rollback", "iris"])
