"""The `mlkube` command.

One entry point for everything a user runs by hand: subcommand groups register themselves
on one argparse tree, so adding a group never touches the others. Groups shipped by other
distributions plug in through the `mlkube.cli` entry-point group: `mlkube dev` (the
embedded local cluster) comes from mlkube-devcluster, which is never installed in an image,
so the operator never imports it; the SDK's verbs (`mlkube runs`, `compare`, `predict`,
`logs`) come the same way from the `mlkube` package (sdk/), absent from the images.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]


def _validate(args: argparse.Namespace) -> int:
    from .validate import exit_code, validate

    return exit_code(validate(list(args.paths)))


def _add_validate(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "validate",
        help="check mlkube manifests (files or directories) against the CRD models",
        description=(
            "Check Dataset, TrainingRun and ModelDeployment manifests before they reach a cluster, "
            "reading YAML as the API server does. Exit code: the number of invalid resources (at most 125)."
        ),
    )
    cmd.add_argument("paths", nargs="+", type=Path, metavar="PATH")
    cmd.set_defaults(func=_validate)


def _rollout(args: argparse.Namespace) -> int:
    import kubernetes

    from .rollout import request

    try:
        kubernetes.config.load_kube_config(config_file=args.kubeconfig)  # type: ignore[no-untyped-call]
    except kubernetes.config.ConfigException:
        kubernetes.config.load_incluster_config()  # type: ignore[no-untyped-call]
    with kubernetes.client.ApiClient() as api:
        try:
            acted, result = request(api, args.namespace, args.deployment, args.action, args.wait)
        except kubernetes.client.ApiException as err:
            print(
                f"mlkube: {args.action} {args.namespace}/{args.deployment}: {err.status} {err.reason}",
                file=sys.stderr,
            )
            return 1
    print(f"{args.namespace}/{args.deployment}: {args.action}: {result}")
    return 0 if acted else 1


def _add_rollout(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "rollout",
        help="promote or abort a ModelDeployment's canary, or clear its rollback pin",
        description=(
            "Ask the operator to promote the running canary, abort the canary or rollout (the model "
            "is rejected), or unpin (forget rejected models and serve what the TrainingRun offers). "
            "Writes the mlkube.io/action annotations; the result is in status.manualAction and an Event."
        ),
    )
    cmd.add_argument("action", choices=("promote", "abort", "unpin"))
    cmd.add_argument("deployment", metavar="DEPLOYMENT", help="ModelDeployment name")
    cmd.add_argument("-n", "--namespace", default="default")
    cmd.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)"
    )
    cmd.add_argument("--wait", type=float, default=30.0, help="seconds to wait for the operator's answer")
    cmd.set_defaults(func=_rollout)


def _operator(args: argparse.Namespace) -> int:
    from .main import main as operator_main

    return operator_main(verbose=args.verbose)


def _add_operator(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    cmd = sub.add_parser(
        "operator",
        help="run the operator (leader election, kopf handlers, health and metrics endpoints)",
        description="Run the mlkube operator; configured by MLKUBE_* environment variables (docs/operator.md).",
    )
    cmd.set_defaults(func=_operator)


def _usage(parser: argparse.ArgumentParser) -> int:
    parser.print_help(sys.stderr)
    return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mlkube", description="Kubernetes-native MLOps for scikit-learn models."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log more")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    _add_validate(sub)
    _add_rollout(sub)
    _add_operator(sub)
    for plugin in sorted(entry_points(group="mlkube.cli"), key=lambda e: e.name):
        try:
            register = plugin.load()
        except ModuleNotFoundError as err:
            # The images install mlkube's wheel without the SDK package its verbs live in
            # (entry point `sdk`); a plugin whose own package is absent is skipped, any
            # other missing import is a bug and raises.
            if (err.name or "").split(".")[0] != plugin.module.split(".")[0]:
                raise
            continue
        register(sub)
    parser.set_defaults(func=lambda _args: _usage(parser))
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="mlkube: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("urllib3").setLevel(logging.WARNING)
    func: Handler = args.func
    return func(args)


if __name__ == "__main__":
    sys.exit(main())
