"""`python -m mlkube_operator.training`: the entrypoint the profile and training Jobs run."""

from __future__ import annotations

from mlkube_operator.training.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
