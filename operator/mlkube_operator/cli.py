"""The `mlkube` command.

One entry point for everything a user runs by hand (and the image's default entrypoint):
subcommand groups register themselves on one argparse tree, so adding a group never
touches the others. `mlkube dev` manages the embedded local cluster.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

Handler = Callable[[argparse.Namespace], int]


def _dev_up(args: argparse.Namespace) -> int:
    from .devcluster import cluster

    try:
        result = cluster.up(args.state_dir, operator=not args.no_operator, crds_dir=args.crds)
    except Exception as exc:
        print(f"mlkube dev up: {exc}", file=sys.stderr)
        return 1
    if result.started:
        print(f"started: {', '.join(result.started)}", file=sys.stderr)
    if result.already_running:
        print(f"already running: {', '.join(result.already_running)}", file=sys.stderr)
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"ready in {result.timings.get('total', 0.0):.1f}s; state in {result.state_dir}", file=sys.stderr)
    sys.stderr.flush()
    print(f"export KUBECONFIG={result.kubeconfig}")
    return 1 if result.failed else 0


def _dev_down(args: argparse.Namespace) -> int:
    from .devcluster import cluster

    stopped = cluster.down(args.state_dir, purge=args.purge)
    if stopped:
        print(f"stopped: {', '.join(stopped)}", file=sys.stderr)
    else:
        print("nothing was running", file=sys.stderr)
    return 0


def _dev_status(args: argparse.Namespace) -> int:
    from .devcluster import cluster

    st = cluster.status(args.state_dir)
    print(cluster.describe(st))
    return 0 if st.running else 1


def _dev_kubeconfig(args: argparse.Namespace) -> int:
    from .devcluster.state import StateDir

    state = StateDir(args.state_dir)
    print(state.kubeconfig)
    if not state.kubeconfig.is_file():
        print("mlkube dev kubeconfig: no cluster yet; run `mlkube dev up`", file=sys.stderr)
        return 1
    return 0


def _add_dev(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    dev = sub.add_parser(
        "dev",
        help="the embedded local cluster (real control plane + local kubelet)",
        description="Run a real Kubernetes control plane and a local kubelet on this machine.",
    )
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="COMMAND")
    state_help = "state directory (default ${MLKUBE_DEV_DIR:-${XDG_STATE_HOME:-~/.local/state}/mlkube/dev})"

    up = dev_sub.add_parser("up", help="start the cluster (idempotent); prints `export KUBECONFIG=...` last")
    up.add_argument("--state-dir", type=Path, default=None, help=state_help)
    up.add_argument("--no-operator", action="store_true", help="do not start the mlkube operator")
    up.add_argument("--crds", type=Path, default=None, help="directory of CRD YAML to apply (default: crds/)")
    up.set_defaults(func=_dev_up)

    down = dev_sub.add_parser("down", help="stop every process the cluster started")
    down.add_argument("--state-dir", type=Path, default=None, help=state_help)
    down.add_argument("--purge", action="store_true", help="also delete the state directory")
    down.set_defaults(func=_dev_down)

    status = dev_sub.add_parser("status", help="show what runs; exit 1 unless the cluster is up")
    status.add_argument("--state-dir", type=Path, default=None, help=state_help)
    status.set_defaults(func=_dev_status)

    kubeconfig = dev_sub.add_parser("kubeconfig", help="print the kubeconfig path")
    kubeconfig.add_argument("--state-dir", type=Path, default=None, help=state_help)
    kubeconfig.set_defaults(func=_dev_kubeconfig)

    dev.set_defaults(func=lambda _args: _usage(dev))


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
    _add_dev(sub)
    _add_validate(sub)
    _add_rollout(sub)
    _add_operator(sub)
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
