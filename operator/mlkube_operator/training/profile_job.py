"""The profile Job: source -> validated, canonical, hashed, profiled dataset.

The order matters: rules are checked on the selected columns before anything is
written, so a Dataset that is not Ready leaves nothing in the artifact store; and the
profile is computed from the canonical bytes parsed back, so the profile, the hash
and what the training Job will read describe exactly the same values.
"""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlkube_operator import artifacts
from mlkube_operator.api.dataset import DatasetSpec

from .artifacts import open_store, sha256_bytes
from .canonical import canonical_csv
from .contract import DATA_FILE, PROFILE_FILE, Reason
from .errors import JobFailure, log
from .profiling import build_profile, schema
from .rules import check_rules, select_columns
from .sources import load_frame, parse_canonical


@dataclass(frozen=True)
class ProfileRequest:
    spec: DatasetSpec
    namespace: str
    name: str
    artifact_root: str  # a local directory or an s3://bucket/prefix
    configmap_dir: Path | None
    source_timeout: float


def run_profile(req: ProfileRequest) -> dict[str, Any]:
    """Profile the dataset and return the success termination message."""
    spec = req.spec
    store = open_store(req.artifact_root)
    frame, origin = load_frame(spec, store=store, configmap_dir=req.configmap_dir, timeout=req.source_timeout)
    log(f"profile: loaded {len(frame)} rows x {len(frame.columns)} columns from {origin}")
    features, target = select_columns(frame, spec)
    columns = [*features, target]
    check_rules(frame, columns, spec.validation)

    # Threads: Arrow's kernels, hashing, writing (network or fsync) and numpy's sorts hold
    # no GIL, so they run beside pandas' parse and the profile's Python.
    with ThreadPoolExecutor(max_workers=3, thread_name_prefix="profile") as pool:
        data = canonical_csv(frame, columns, pool=pool)
        source_rows = len(frame)
        del frame  # the source frame is not needed any more: the profile describes the canonical bytes
        hashed = pool.submit(sha256_bytes, data)
        canonical = parse_canonical(data)
        content_hash = hashed.result()
        if len(canonical) != source_rows or list(canonical.columns) != columns:
            raise JobFailure(
                Reason.VALIDATION_FAILED,
                f"the data does not survive CSV round-tripping ({source_rows} rows became {len(canonical)})",
            )
        directory = artifacts.dataset_dir(req.namespace, req.name, content_hash)
        # The data is final once it round-trips: it is written while the profile is
        # computed. profile.json last: its presence means the version is complete.
        data_written = pool.submit(store.write, str(directory / DATA_FILE), data)
        profile = build_profile(canonical, features, target, spec.profile.bins, content_hash, pool=pool)
        data_uri = data_written.result()
    profile_uri = store.write(str(directory / PROFILE_FILE), (json.dumps(profile) + "\n").encode("utf-8"))
    log(
        f"profile: {len(canonical)} rows, task {profile['task']}, contentHash {content_hash}, wrote {store.uri(str(directory))}"
    )
    return {
        "ok": True,
        "rows": len(canonical),
        "columns": len(columns),
        "contentHash": content_hash,
        "profileUri": profile_uri,
        "dataUri": data_uri,
        "task": profile["task"],
        "target": target,
        "features": features,
        "schema": schema(canonical, columns),
    }
