"""kopf handlers; `kopf run -m mlkube_operator.handlers` imports this package to register them.

Handlers stay thin: they fetch what a planner needs through adapters, call the pure
planner, apply its plan and write status. Every trigger (the resource's own watch
events, its Jobs' events, a periodic resync) runs the same level-based reconcile, so
a missed event or an operator restart only delays, never changes, the outcome.
"""

from __future__ import annotations

from . import lifecycle, monitoring, serving, states, training  # noqa: F401  (registration by import)
