"""Files in the artifact store: written atomically, addressed by file:// URIs.

A Job can be killed at any instant (deadline, eviction, node loss) and its retry or
a serving pod may read the same path concurrently, so a reader must see either no
file or a complete one: every write goes to a temporary file in the same directory
and is renamed into place. Files are made world-readable because serving pods may
run under a different uid than the Job that wrote them.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from urllib.parse import unquote, urlparse

_CHUNK = 1 << 20


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def file_uri(path: Path) -> str:
    return path.resolve().as_uri()


def path_from_file_uri(uri: str) -> Path:
    """The local path of a `file://` URI (or of a plain absolute path)."""
    parsed = urlparse(uri)
    if parsed.scheme == "" and uri.startswith("/"):
        return Path(uri)
    if parsed.scheme != "file" or parsed.netloc not in ("", "localhost"):
        raise ValueError(f"not a local file:// URI: {uri!r}")
    return Path(unquote(parsed.path))


class ArtifactStore:
    """Where a Job writes its outputs: a mounted volume (file://) or object storage (s3://).

    Both write whole objects that appear at once: the volume through rename, S3 because
    a PUT is atomic (a reader sees the old object, none, or the complete new one).
    Writers put the file that marks completion (profile.json, model.joblib's
    metadata.json) last.
    """

    def uri(self, relative: str) -> str:
        raise NotImplementedError

    def write(self, relative: str, data: bytes) -> str:
        raise NotImplementedError

    def read(self, location: str) -> bytes:
        """The bytes of `location` (a URI this store gave, or a path/key relative to it)."""
        raise NotImplementedError


class LocalStore(ArtifactStore):
    def __init__(self, root: Path) -> None:
        self.root = root

    def uri(self, relative: str) -> str:
        return file_uri(self.root / relative)

    def write(self, relative: str, data: bytes) -> str:
        atomic_write_bytes(self.root / relative, data)
        return self.uri(relative)

    def read(self, location: str) -> bytes:
        path = path_from_file_uri(location) if location.startswith(("file:", "/")) else self.root / location
        return path.read_bytes()


class S3Store(ArtifactStore):
    def __init__(self, root_uri: str) -> None:
        from .objectstore import artifact_config, parse_s3_uri

        self.root = parse_s3_uri(root_uri)
        self.config = artifact_config()
        self._fs = self.config.filesystem()

    def uri(self, relative: str) -> str:
        return self.root.child(relative).uri()

    def _path(self, location: str) -> str:
        from .objectstore import parse_s3_uri

        if location.startswith("s3://"):
            return parse_s3_uri(location).path
        return self.root.child(location).path

    def write(self, relative: str, data: bytes) -> str:
        from .contract import Reason
        from .objectstore import s3_failure

        path = self.root.child(relative).path
        try:
            with self._fs.open_output_stream(path) as out:
                out.write(data)
        except OSError as err:
            raise s3_failure(
                err, self.uri(relative), self.config, reason=Reason.ARTIFACT_STORE_UNAVAILABLE
            ) from err
        return self.uri(relative)

    def read(self, location: str) -> bytes:
        path = self._path(location)
        from pyarrow import fs as pafs

        if self._fs.get_file_info(path).type != pafs.FileType.File:
            raise FileNotFoundError(f"s3://{path}")
        with self._fs.open_input_stream(path) as stream:
            data: bytes = stream.read()
        return data


def open_store(root: str) -> ArtifactStore:
    """The store named by --artifact-root: an s3:// prefix or a local directory."""
    if root.startswith("s3://"):
        return S3Store(root)
    return LocalStore(Path(root).resolve())
