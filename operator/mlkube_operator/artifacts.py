"""The artifact store's layout, shared by the operator, the Job entrypoints and serving.

Paths are derived, never reported: the operator computes where a profile or a model
lives from the resource and its content hash, so status URIs do not depend on how a
node mounted the volume.
"""

from __future__ import annotations

from pathlib import PurePosixPath

from . import constants as C


def dataset_dir(namespace: str, name: str, content_hash: str) -> PurePosixPath:
    return PurePosixPath("datasets", namespace, name, content_hash)


def model_dir(namespace: str, name: str, uid: str, generation: int) -> PurePosixPath:
    return PurePosixPath("models", namespace, name, uid, str(generation))


def mounted(relative: PurePosixPath, root: str = C.ARTIFACT_MOUNT) -> str:
    """Absolute path of an artifact inside a pod that mounts the store at `root`."""
    return str(PurePosixPath(root) / relative)


def uri(relative: PurePosixPath, root: str = C.ARTIFACT_MOUNT) -> str:
    return f"file://{mounted(relative, root)}"
