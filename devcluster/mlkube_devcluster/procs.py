"""Background processes that outlive the command that started them, and their pid files.

`mlkube dev up` returns while etcd, the API server and the rest keep running, so the only
link between a later `down` and those processes is a pid file. A bare pid can be reused
by an unrelated process after a reboot or a crash, so each record also keeps the
process's start time from /proc; a record whose pid now has another start time is dead.
Every process gets its own session (and so process group) so that stopping it also stops
whatever it spawned, and so that a terminal's Ctrl-C never reaches it.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

log = logging.getLogger("mlkube.devcluster")

# Popen objects of processes this Python process started, so they are reaped (no zombies,
# no "subprocess still running" warnings) when they stop.
_children: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    argv: list[str]

    def to_json(self) -> str:
        return json.dumps(asdict(self)) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ProcessRecord:
        raw = json.loads(text)
        return cls(
            name=str(raw["name"]),
            pid=int(raw["pid"]),
            start_ticks=int(raw["start_ticks"]),
            argv=[str(a) for a in raw.get("argv", [])],
        )


def _stat_fields(pid: int) -> list[str] | None:
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name is in parentheses and may contain spaces; fields follow the last ')'.
    return raw[raw.rindex(")") + 2 :].split()


def start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, or None if it does not exist."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    child = _children.get(pid)
    if child is not None:
        if child.poll() is not None:
            _children.pop(pid, None)
        return
    with contextlib.suppress(ChildProcessError, OSError):
        os.waitpid(pid, os.WNOHANG)


def pid_alive(pid: int, ticks: int | None = None) -> bool:
    """True when `pid` runs (not a zombie) and, if given, started at `ticks`."""
    _reap(pid)
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X"):
        return False
    return ticks is None or int(fields[19]) == ticks


def is_alive(record: ProcessRecord) -> bool:
    return pid_alive(record.pid, record.start_ticks)


def read_record(pid_file: Path) -> ProcessRecord | None:
    try:
        return ProcessRecord.from_json(pid_file.read_text())
    except (OSError, ValueError, KeyError):
        return None


def running(pid_file: Path) -> ProcessRecord | None:
    """The record in `pid_file` if its process is still the one that wrote it."""
    record = read_record(pid_file)
    if record is not None and is_alive(record):
        return record
    return None


def start(
    name: str,
    argv: Sequence[str],
    *,
    log_file: Path,
    pid_file: Path,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> ProcessRecord:
    log_file.parent.mkdir(parents=True, exist_ok=True)
    pid_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as out:
        out.write(f"\n==== {time.strftime('%Y-%m-%dT%H:%M:%S')} starting {' '.join(argv)}\n".encode())
        out.flush()
        proc = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
            cwd=cwd,
            start_new_session=True,
            close_fds=True,
        )
    _children[proc.pid] = proc
    ticks = start_ticks(proc.pid) or 0
    record = ProcessRecord(name=name, pid=proc.pid, start_ticks=ticks, argv=list(argv))
    tmp = pid_file.with_suffix(".tmp")
    tmp.write_text(record.to_json())
    tmp.replace(pid_file)
    log.info("Started %s pid %d", name, proc.pid)
    return record


def binary_replaced(pid: int) -> bool:
    """True when the program file `pid` runs was replaced or deleted since it started."""
    try:
        return os.readlink(f"/proc/{pid}/exe").endswith(" (deleted)")
    except OSError:
        return False


def exit_status(pid: int) -> int | None:
    """The exit code of a child this process started, once it has exited."""
    child = _children.get(pid)
    return None if child is None else child.poll()


def signal_group(pid: int, sig: int) -> None:
    """Signal the process group led by `pid` (every process gets its own), else the pid."""
    try:
        os.killpg(pid, sig)
    except ProcessLookupError:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
    except PermissionError:
        pass


def stop(record: ProcessRecord, timeout: float = 10.0) -> bool:
    """SIGTERM the process group, SIGKILL it after `timeout`; True if it was running."""
    if not is_alive(record):
        return False
    signal_group(record.pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_alive(record):
            break
        time.sleep(0.05)
    else:
        log.warning("%s pid %d did not stop within %.0fs: killing it", record.name, record.pid, timeout)
    # Whatever is left in the group (the leader included) goes now.
    signal_group(record.pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while is_alive(record) and time.monotonic() < deadline:
        time.sleep(0.05)
    child = _children.pop(record.pid, None)
    if child is not None:
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=1)
    log.info("Stopped %s pid %d", record.name, record.pid)
    return True


def group_members(pgid: int) -> list[int]:
    """Live processes whose process group is `pgid`."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is None or fields[0] in ("Z", "X"):
            continue
        if int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members
