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


def model_dir(namespace: str, name: str, uid: str, generation: int, follow_round: int = 0) -> PurePosixPath:
    """One directory per generation, and per retrain that followed new Dataset contents."""
    key = str(generation) if follow_round == 0 else f"{generation}-f{follow_round}"
    return PurePosixPath("models", namespace, name, uid, key)


def mounted(relative: PurePosixPath, root: str = C.ARTIFACT_MOUNT) -> str:
    """Absolute path of an artifact inside a pod that mounts the store at `root`."""
    return str(PurePosixPath(root) / relative)


def uri(relative: PurePosixPath, root: str = C.ARTIFACT_MOUNT) -> str:
    """file:// URI under a mounted volume, or s3://bucket/prefix/relative when `root` is an s3:// prefix."""
    if root.startswith("s3://"):
        return f"{root.rstrip('/')}/{relative}"
    return f"file://{mounted(relative, root)}"


def location(relative: PurePosixPath, root: str = C.ARTIFACT_MOUNT) -> str:
    """What a Job or a server is given to read an artifact: a mounted path or an s3:// URI."""
    return uri(relative, root) if root.startswith("s3://") else mounted(relative, root)


def root_of(artifact_uri: str) -> str:
    """The store root an artifact URI lives under: its s3:// prefix, or the volume's mount path."""
    if artifact_uri.startswith("s3://"):
        for top in ("/models/", "/datasets/"):
            if top in artifact_uri:
                return artifact_uri.rsplit(top, 1)[0]
    return C.ARTIFACT_MOUNT
