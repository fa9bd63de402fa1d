"""Watch events of every mlkube object feed the operator's object-state series.

The overview of the Grafana dashboard (objects by condition, canary weights) needs
series that reflect every object, not only the ones that changed since the operator
started: kopf delivers each object once at start-up (the initial listing) and then
every change and deletion, which is exactly what `observability.ObjectStates` counts.
These handlers only record; they never call the API or raise.
"""

from __future__ import annotations

from typing import Any

import kopf

from .. import constants as C
from .. import observability as obs

DATASETS, TRAINING_RUNS, MODEL_DEPLOYMENTS = "datasets", "trainingruns", "modeldeployments"


@kopf.on.event(C.GROUP, C.VERSION, DATASETS)
def dataset_state(type: str | None, body: kopf.Body, **_: Any) -> None:
    obs.object_states.observe(obs.KIND_DATASET, type, body)


@kopf.on.event(C.GROUP, C.VERSION, TRAINING_RUNS)
def training_run_state(type: str | None, body: kopf.Body, **_: Any) -> None:
    obs.object_states.observe(obs.KIND_TRAINING_RUN, type, body)


@kopf.on.event(C.GROUP, C.VERSION, MODEL_DEPLOYMENTS)
def model_deployment_state(type: str | None, body: kopf.Body, **_: Any) -> None:
    obs.object_states.observe(obs.KIND_MODEL_DEPLOYMENT, type, body)
