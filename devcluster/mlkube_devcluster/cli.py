"""`mlkube dev`: the embedded local cluster, plugged into the `mlkube` command.

Registered through the `mlkube.cli` entry point of the mlkube-devcluster distribution, so
the operator's own CLI never imports this package and images never contain it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def _dev_up(args: argparse.Namespace) -> int:
    from . import cluster

    try:
        result = cluster.up(args.state_dir, operator=args.operator, crds_dir=args.crds)
    except Exception as exc:
        print(f"mlkube dev up: {exc}", file=sys.stderr)
        return 1
    for img in result.images:
        print(
            f"image {img.image}: {img.size_bytes / 1e6:.0f} MB ({'built' if img.built else 'up to date'})",
            file=sys.stderr,
        )
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
    from . import cluster

    stopped = cluster.down(args.state_dir, purge=args.purge)
    if stopped:
        print("stopped and undone:\n  " + "\n  ".join(stopped), file=sys.stderr)
    else:
        print("nothing was running", file=sys.stderr)
    return 0


def _dev_status(args: argparse.Namespace) -> int:
    from . import cluster

    st = cluster.status(args.state_dir)
    print(cluster.describe(st))
    return 0 if st.running else 1


def _dev_kubeconfig(args: argparse.Namespace) -> int:
    from .state import StateDir

    state = StateDir(args.state_dir)
    print(state.kubeconfig)
    if not state.kubeconfig.is_file():
        print("mlkube dev kubeconfig: no cluster yet; run `mlkube dev up`", file=sys.stderr)
        return 1
    return 0


def _demo(args: argparse.Namespace) -> int:
    from . import demo

    return demo.main(args)


def register(sub: Any) -> None:
    """Add `dev` and `demo` to the `mlkube` command's subparsers."""
    demo = sub.add_parser(
        "demo",
        help="the closed loop on the dev cluster: train, serve, canary, drift, rollback (a timeline)",
        description="Run examples/iris on the dev cluster end to end and print what the operator did.",
    )
    demo.add_argument("--json", action="store_true", help="print one JSON summary instead of the timeline")
    demo.add_argument(
        "--namespace", default="mlkube-demo", help="namespace to run the demo in (default: mlkube-demo)"
    )
    demo.set_defaults(func=_demo)

    dev = sub.add_parser(
        "dev",
        help="the embedded local cluster (real control plane, kubelet, containerd, kube-proxy, DNS)",
        description="Run a real single-node Kubernetes on this machine, with mlkube installed in it.",
    )
    dev_sub = dev.add_subparsers(dest="dev_command", metavar="COMMAND")
    state_help = "state directory (default ${MLKUBE_DEV_DIR:-${XDG_STATE_HOME:-~/.local/state}/mlkube/dev})"

    up = dev_sub.add_parser("up", help="start the cluster (idempotent); prints `export KUBECONFIG=...` last")
    up.add_argument("--state-dir", type=Path, default=None, help=state_help)
    up.add_argument(
        "--operator",
        choices=("cluster", "host", "none"),
        default="cluster",
        help="run the operator in-cluster from manifests/ (default), as a host process (debugging), or not at all",
    )
    up.add_argument("--crds", type=Path, default=None, help="directory of CRD YAML to apply (default: crds/)")
    up.set_defaults(func=_dev_up)

    down = dev_sub.add_parser("down", help="stop everything and undo every change to the host")
    down.add_argument("--state-dir", type=Path, default=None, help=state_help)
    down.add_argument("--purge", action="store_true", help="also delete the state directory")
    down.set_defaults(func=_dev_down)

    status = dev_sub.add_parser("status", help="show what runs; exit 1 unless the cluster is up")
    status.add_argument("--state-dir", type=Path, default=None, help=state_help)
    status.set_defaults(func=_dev_status)

    kubeconfig = dev_sub.add_parser("kubeconfig", help="print the kubeconfig path")
    kubeconfig.add_argument("--state-dir", type=Path, default=None, help=state_help)
    kubeconfig.set_defaults(func=_dev_kubeconfig)

    dev.set_defaults(func=lambda _args: (dev.print_help(sys.stderr), 2)[1])
