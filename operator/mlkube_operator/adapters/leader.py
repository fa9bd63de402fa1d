"""Leader election on a `coordination.k8s.io/v1` Lease, as client-go's leaderelection does it.

kopf has no leader election (its "peering" only pauses operators of lower priority and
needs its own CRDs), so the operator elects one replica itself. One round
(`try_acquire_or_renew`) reads the Lease and then:

- holds it already: renews (`renewTime` = now);
- nobody holds it (new Lease, or released with an empty `holderIdentity`): takes it;
- someone else holds it: takes it only once the record has not changed for
  `leaseDurationSeconds` as measured on *this* process's monotonic clock since it
  first saw that record. Clocks of different nodes are never compared.

Every write is a PUT guarded by the `resourceVersion` just read, so of two candidates
racing for an expired Lease exactly one wins; the loser gets 409 and stays standby.
The timing contract that keeps two leaders from overlapping (see `mlkube_operator.main`):
the leader gives up when it has not renewed for `renew_deadline` < `lease_duration`, so
it stops before a standby can consider the Lease expired.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import kubernetes
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)
JSON = dict[str, Any]


@dataclass(frozen=True)
class LeaseRecord:
    holder: str
    acquire_time: str | None
    renew_time: str | None
    lease_duration_seconds: int
    transitions: int


@dataclass(frozen=True)
class Round:
    """What one acquire-or-renew round found out."""

    leader: bool
    holder: str  # who holds the Lease as far as this round knows ("" nobody / unknown)
    reached: bool  # the API server answered (a 409 counts: it answered)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class LeaseElector:
    def __init__(
        self,
        api_client: kubernetes.client.ApiClient,
        namespace: str,
        name: str,
        identity: str,
        lease_duration: float,
        request_timeout: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.coordination: Any = kubernetes.client.CoordinationV1Api(api_client)
        self.namespace, self.name, self.identity = namespace, name, identity
        self.lease_duration = lease_duration
        self.request_timeout = request_timeout
        self.clock = clock
        self._observed: tuple[LeaseRecord, str] | None = None  # (record, resourceVersion)
        self._observed_at = 0.0

    def _body(
        self, resource_version: str | None, transitions: int, holder: str, acquire_time: str | None
    ) -> JSON:
        now = _now()
        spec: JSON = {
            "holderIdentity": holder,
            "leaseDurationSeconds": max(1, round(self.lease_duration)),
            "acquireTime": acquire_time or now,
            "renewTime": now,
            "leaseTransitions": transitions,
        }
        metadata: JSON = {"name": self.name, "namespace": self.namespace}
        if resource_version is not None:
            metadata["resourceVersion"] = resource_version
        return {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": metadata, "spec": spec}

    def _read(self) -> tuple[LeaseRecord, str] | None:
        response = self.coordination.read_namespaced_lease(
            self.name, self.namespace, _preload_content=False, _request_timeout=self.request_timeout
        )
        lease = json.loads(response.data)
        spec = lease.get("spec") or {}
        record = LeaseRecord(
            holder=str(spec.get("holderIdentity") or ""),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            lease_duration_seconds=int(spec.get("leaseDurationSeconds") or 0),
            transitions=int(spec.get("leaseTransitions") or 0),
        )
        return record, str(lease["metadata"]["resourceVersion"])

    def try_acquire_or_renew(self) -> Round:
        """One round; never raises for API trouble (that is a failed round)."""
        try:
            try:
                current = self._read()
            except ApiException as err:
                if err.status != 404:
                    raise
                current = None
            if current is None:
                self.coordination.create_namespaced_lease(
                    self.namespace,
                    self._body(None, 0, self.identity, None),
                    _request_timeout=self.request_timeout,
                )
                log.info("Acquired Lease %s/%s as %s (new)", self.namespace, self.name, self.identity)
                return Round(leader=True, holder=self.identity, reached=True)
            record, version = current
            now = self.clock()
            if self._observed is None or self._observed[0] != record:
                self._observed, self._observed_at = (record, version), now
            if record.holder == self.identity:
                self._replace(version, record.transitions, record.acquire_time)
                return Round(leader=True, holder=self.identity, reached=True)
            duration = record.lease_duration_seconds or self.lease_duration
            if record.holder and now < self._observed_at + duration:
                return Round(leader=False, holder=record.holder, reached=True)
            self._replace(version, record.transitions + 1, None)
            log.info(
                "Acquired Lease %s/%s as %s (previous holder: %s)",
                self.namespace,
                self.name,
                self.identity,
                record.holder or "none",
            )
            return Round(leader=True, holder=self.identity, reached=True)
        except ApiException as err:
            if err.status == 409:  # another candidate wrote first
                return Round(leader=False, holder="", reached=True)
            log.warning("Lease %s/%s: API server answered %s", self.namespace, self.name, err.status)
            return Round(leader=False, holder="", reached=err.status is not None and err.status > 0)
        except (HTTPError, OSError) as err:
            log.warning("Lease %s/%s: cannot reach the API server: %s", self.namespace, self.name, err)
            return Round(leader=False, holder="", reached=False)

    def _replace(self, version: str, transitions: int, acquire_time: str | None) -> None:
        body = self._body(version, transitions, self.identity, acquire_time)
        self.coordination.replace_namespaced_lease(
            self.name, self.namespace, body, _request_timeout=self.request_timeout
        )

    def release(self) -> bool:
        """Give the Lease up (empty holder) so a standby takes over at its next round; True if released."""
        try:
            current = self._read()
            if current is None or current[0].holder != self.identity:
                return False
            record, version = current
            body = self._body(version, record.transitions, "", record.acquire_time)
            body["spec"]["leaseDurationSeconds"] = 1
            self.coordination.replace_namespaced_lease(
                self.name, self.namespace, body, _request_timeout=self.request_timeout
            )
        except (ApiException, HTTPError, OSError) as err:
            log.warning("Could not release Lease %s/%s: %s", self.namespace, self.name, err)
            return False
        log.info("Released Lease %s/%s", self.namespace, self.name)
        return True
