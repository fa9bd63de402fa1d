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
