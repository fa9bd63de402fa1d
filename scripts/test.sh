#!/usr/bin/env bash
# The pytest part of `make test`, in three passes on one dev cluster:
#   1. tests that stay in their own namespace, three at a time (pytest-xdist): they mostly
#      wait on pods and Jobs;
#   2. modules marked `host_operator`, two at a time: each runs its own operators as host
#      processes scoped to its namespaces, while the in-cluster operator is paused;
#   3. tests marked `exclusive`, one at a time: they stop the operator or the node for everyone.
# Every pass runs even when an earlier one failed; the script fails if any did. The
# cluster stays up between passes and is stopped at the end if it was not running before.
# Arguments are passed to every pytest run (e.g. -x, -k EXPR).
set -uo pipefail
cd "$(dirname "$0")/.."
py=.venv/bin/python
# `running`: prints 1 when the tests' dev cluster runs; `down`: stops it.
cluster() {
  "$py" - "$1" <<'PY'
import os
import sys
from pathlib import Path
from mlkube_devcluster import cluster
from mlkube_devcluster.state import StateDir
chosen = os.environ.get("MLKUBE_TEST_DEV_DIR")
root = StateDir(Path(chosen) if chosen else None).root
if sys.argv[1] == "down":
    cluster.down(root)
else:
    print(1 if cluster.status(root).running else 0)
PY
}
was_running="$(cluster running)"
export MLKUBE_TEST_KEEP_CLUSTER=1
pytest=("$py" -m pytest -p no:cacheprovider)
"${pytest[@]}" -n 3 --dist loadfile -m "not exclusive and not host_operator" --durations=30 "$@"
first=$?
"${pytest[@]}" -n 2 --dist loadfile -m "host_operator and not exclusive" --durations=15 "$@"
second=$?
"${pytest[@]}" -m "exclusive" --durations=15 "$@"
third=$?
if [ "$was_running" != 1 ] && [ "$(cluster running)" = 1 ]; then
  cluster down
fi
for rc in "$first" "$second" "$third"; do
  # 5 (no tests collected) fails a full run; with arguments (-k EXPR) a pass may select none.
  [ "$rc" = 0 ] || { [ "$rc" = 5 ] && [ $# -gt 0 ]; } || exit "$rc"
done
exit 0
