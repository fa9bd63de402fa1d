"""`mlkube runs | compare | predict | logs`: the SDK's tasks as CLI verbs.

Registered on the `mlkube` command through the `mlkube.cli` entry-point group (as
`mlkube dev` is), so the operator's CLI never imports the SDK; an image without the SDK
simply has no such verbs. Tables are cut to the terminal's width
(only on a terminal: piped output keeps every column).
"""

from __future__ import annotations

import argparse
import shutil
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    Sub = argparse._SubParsersAction[argparse.ArgumentParser]


def table(rows: Sequence[Sequence[Any]], header: Sequence[str], width: int | None = None) -> str:
    """A plain text table; columns that do not fit `width` (default: the terminal's, no limit when
    stdout is not a terminal) are dropped from the right, long cells cut."""
    if width is None:
        width = shutil.get_terminal_size().columns if sys.stdout.isatty() else 10_000
    cells = [[_fmt(c)[:40] for c in row] for row in rows]
    cols: list[int] = []
    used = 0
    for i, name in enumerate(header):
        w = max([len(name), *(len(r[i]) for r in cells)])
        if cols and used + w > width:
            break
        cols.append(w)
        used += w + 2
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, cols, strict=False)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, cols, strict=False)).rstrip() for r in cells]
    return "\n".join(lines)


def _fmt(v: Any) -> str:
    if v is None or (isinstance(v, float) and v != v):
        return ""
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def _connect(args: argparse.Namespace) -> Any:
    from . import connect

    return connect(namespace=args.namespace, kubeconfig=args.kubeconfig)


def _runs(args: argparse.Namespace) -> int:
    from . import compare, runs

    s = _connect(args)
    handles = runs(session=s)
    if not handles:
        print(f"no TrainingRuns in namespace {s.namespace}", file=sys.stderr)
        return 0
    frame = compare(handles, session=s)
    metric = f"metric.{args.metric}"
    rows = [
        [name, r["estimator"].rsplit(".", 1)[-1], r["dataset"], r["succeeded"], r["reason"], r.get(metric)]
        for name, r in frame.iterrows()
    ]
    print(table(rows, ["RUN", "ESTIMATOR", "DATASET", "SUCCEEDED", "REASON", args.metric.upper()]))
    return 0


def _compare(args: argparse.Namespace) -> int:
    from . import compare

    s = _connect(args)
    frame = compare(list(args.runs), session=s, trials=args.trials)
    lead = [c for c in ("trial", "rank", "score") if args.trials and c in frame.columns]
    columns = lead + [c for c in frame.columns if c.startswith(("param.", "metric."))]
    rows = [[name, *("" if _missing(r[c]) else r[c] for c in columns)] for name, r in frame.iterrows()]
    print(table(rows, ["RUN", *(c.upper() if c in lead else c for c in columns)]))
    return 0


def _missing(value: object) -> bool:
    return value is None or (isinstance(value, float) and value != value)


def _predict(args: argparse.Namespace) -> int:
    import pandas as pd

    from . import Deployment

    s = _connect(args)
    frame = pd.read_csv(args.file if args.file != "-" else sys.stdin)
    pred = Deployment(args.deployment, s).predict(frame)
    print(f"# feedback id: {pred.id}", file=sys.stderr)
    for value in pred:
        print(value)
    return 0


def _logs(args: argparse.Namespace) -> int:
    from . import Run

    s = _connect(args)
    print(Run(args.run, s).logs(tail_lines=args.tail), end="")
    return 0


def _common(cmd: argparse.ArgumentParser) -> None:
    cmd.add_argument("-n", "--namespace", default=None, help="namespace (default: the kubeconfig context's)")
    cmd.add_argument(
        "--kubeconfig", default=None, help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)"
    )


def register(sub: Sub) -> None:
    """Add the verbs to the `mlkube` command (entry point `mlkube.cli`)."""
    cmd = sub.add_parser("runs", help="list the TrainingRuns of a namespace with their state and a metric")
    cmd.add_argument("--metric", default="accuracy", help="metric column to show (default accuracy)")
    _common(cmd)
    cmd.set_defaults(func=_guard(_runs))

    cmd = sub.add_parser("compare", help="parameters and metrics of TrainingRuns side by side")
    cmd.add_argument("runs", nargs="+", metavar="RUN")
    cmd.add_argument("--trials", action="store_true", help="one line per trial of a search run, best first")
    _common(cmd)
    cmd.set_defaults(func=_guard(_compare))

    cmd = sub.add_parser("predict", help="predict the rows of a CSV file through a ModelDeployment's Service")
    cmd.add_argument("deployment", metavar="DEPLOYMENT")
    cmd.add_argument(
        "-f", "--file", required=True, help="CSV with a header row of feature names ('-': stdin)"
    )
    _common(cmd)
    cmd.set_defaults(func=_guard(_predict))

    cmd = sub.add_parser("logs", help="logs of a TrainingRun's Job pods")
    cmd.add_argument("run", metavar="RUN")
    cmd.add_argument("--tail", type=int, default=None, help="last lines per pod")
    _common(cmd)
    cmd.set_defaults(func=_guard(_logs))


def _guard(func: Any) -> Any:
    """SDK errors as one line on stderr and exit code 1."""

    def run(args: argparse.Namespace) -> int:
        from .errors import MlkubeError

        try:
            result: int = func(args)
        except MlkubeError as err:
            print(f"mlkube {args.command}: {err}", file=sys.stderr)
            return 1
        return result

    return run
