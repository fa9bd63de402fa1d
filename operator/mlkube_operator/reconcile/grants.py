"""May a ModelDeployment serve a TrainingRun of another namespace? (pure)

Two independent checks, both needed, in this order:

1. **Permission.** The namespace that owns the TrainingRun must hold a ModelGrant whose
   `from` names the consumer's namespace (or selects it by its labels) and whose runs
   include the TrainingRun. The owner decides, as with Gateway API's ReferenceGrant;
   without a grant the consumer learns nothing about the other namespace (not even
   whether the TrainingRun exists): the refusal is `ReferenceNotPermitted`.
2. **Reachability.** The consumer's predictors must be able to read the model's bytes.
   A `file://` model lives on the owner's per-namespace artifact volume (a PVC), which a
   pod in another namespace cannot mount; only object storage (`s3://`) is reachable,
   with the consumer's own credentials. Otherwise `ArtifactNotReachable`.

What a ModelDeployment does with a refusal (keep what already serves, roll out nothing
new) is the serving planner's business (reconcile/modeldeployment.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .. import constants as C
from ..api.common import ConditionStatus
from ..api.grant import LabelSelector, ModelGrantSpec, ModelGrantStatus, SelectorOperator
from ..api.validation import InvalidSpecError, parse_model
from .conditions import set_condition

JSON = dict[str, Any]
DOCS = "docs/operator.md#serving-another-namespaces-model"


@dataclass(frozen=True)
class Access:
    """The answer for one reference: permitted or not, why, and on whose grant."""

    permitted: bool
    reason: str
    message: str
    grant: str | None = None


def selector_matches(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """metav1.LabelSelector semantics: every matchLabels pair and every expression holds."""
    if any(labels.get(k) != v for k, v in selector.match_labels.items()):
        return False
    for req in selector.match_expressions:
        present = req.key in labels
        if req.operator is SelectorOperator.IN and not (present and labels[req.key] in req.values):
            return False
        if req.operator is SelectorOperator.NOT_IN and present and labels[req.key] in req.values:
            return False
        if req.operator is SelectorOperator.EXISTS and not present:
            return False
        if req.operator is SelectorOperator.DOES_NOT_EXIST and present:
            return False
    return True


def covers(
    spec: ModelGrantSpec, consumer: str, consumer_labels: Mapping[str, str] | None, run_name: str
) -> bool:
    """Whether one grant lets namespace `consumer` serve TrainingRun `run_name`.

    `consumer_labels` None means the consumer's Namespace could not be read: a selector
    then matches nothing (never grant on missing information).
    """
    if not spec.all_training_runs and run_name not in spec.training_runs:
        return False
    for peer in spec.from_:
        if peer.namespace is not None and peer.namespace == consumer:
            return True
        selector = peer.namespace_selector
        if (
            selector is not None
            and consumer_labels is not None
            and selector_matches(selector, consumer_labels)
        ):
            return True
    return False


def check_permission(
    consumer: str,
    consumer_labels: Mapping[str, str] | None,
    owner: str,
    run_name: str,
    grants: Sequence[JSON],
) -> Access:
    """Find a ModelGrant in `owner` (the TrainingRun's namespace) letting `consumer` serve `run_name`.

    Grants being deleted and grants with an invalid spec (stored before a schema
    change, or past a relaxed validation) grant nothing. The first matching grant by
    name is reported, so the answer does not flap between equivalent grants.
    """
    for grant in sorted(grants, key=lambda g: str(g.get("metadata", {}).get("name", ""))):
        meta = grant.get("metadata") or {}
        if meta.get("deletionTimestamp") or meta.get("namespace", owner) != owner:
            continue
        try:
            spec = parse_model(ModelGrantSpec, grant.get("spec"))
        except InvalidSpecError:
            continue
        if covers(spec, consumer, consumer_labels, run_name):
            name = str(meta.get("name"))
            return Access(
                True,
                C.REASON_REFERENCE_GRANTED,
                f"ModelGrant {owner}/{name} lets namespace {consumer} serve TrainingRun {owner}/{run_name}",
                name,
            )
    return Access(
        False,
        C.REASON_REFERENCE_NOT_PERMITTED,
        f"TrainingRun {owner}/{run_name} is in another namespace and no ModelGrant in namespace {owner} "
        f"lets namespace {consumer} serve it; its owners can create one ({DOCS})",
    )


def check_reachable(consumer: str, owner: str, run_name: str, model_uri: str) -> Access | None:
    """None when predictors in `consumer` can read the model; else why not (ArtifactNotReachable)."""
    if model_uri.startswith("s3://"):
        return None
    return Access(
        False,
        C.REASON_ARTIFACT_NOT_REACHABLE,
        f"the model of TrainingRun {owner}/{run_name} is {model_uri}, on namespace {owner}'s artifact volume "
        f"(a PersistentVolumeClaim), which pods in namespace {consumer} cannot mount; serving a model of "
        f"another namespace needs the object-store artifact store (MLKUBE_ARTIFACT_STORE=s3://..., or the "
        f"annotation mlkube.io/artifact-store on namespace {owner}) ({DOCS})",
    )


def summarize(spec: ModelGrantSpec) -> str:
    """One line for `kubectl get mlgrant`: who may serve what."""
    peers: list[str] = []
    for peer in spec.from_:
        if peer.namespace is not None:
            peers.append(peer.namespace)
        elif peer.namespace_selector is not None:
            sel = peer.namespace_selector
            parts = [f"{k}={v}" for k, v in sorted(sel.match_labels.items())]
            for req in sel.match_expressions:
                values = f" ({','.join(req.values)})" if req.values else ""
                parts.append(f"{req.key} {req.operator.value}{values}")
            peers.append("{" + ", ".join(parts) + "}")
    runs = "all TrainingRuns" if spec.all_training_runs else ", ".join(spec.training_runs)
    return f"{', '.join(peers)} -> {runs}"


def plan_grant_status(obj: JSON, now: datetime) -> tuple[JSON, bool]:
    """A ModelGrant's status: Accepted with its summary, or InvalidSpec naming the field."""
    generation = int((obj.get("metadata") or {}).get("generation") or 0) or None
    old = ModelGrantStatus.model_validate(obj.get("status") or {})
    new = old.model_copy(deep=True)
    new.observed_generation = generation
    try:
        spec = parse_model(ModelGrantSpec, obj.get("spec"))
    except InvalidSpecError as err:
        new.summary = None
        new.conditions = set_condition(
            new.conditions,
            C.ACCEPTED,
            ConditionStatus.FALSE,
            C.REASON_INVALID_SPEC,
            err.message,
            now,
            generation,
        )
    else:
        new.summary = summarize(spec)
        new.conditions = set_condition(
            new.conditions,
            C.ACCEPTED,
            ConditionStatus.TRUE,
            C.REASON_GRANT_ACCEPTED,
            f"ModelDeployments in {new.summary.replace(' -> ', ' may serve ')}",
            now,
            generation,
        )
    status = new.model_dump(mode="json", by_alias=True)
    return status, status != old.model_dump(mode="json", by_alias=True)
