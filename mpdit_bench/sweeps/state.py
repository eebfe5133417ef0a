"""Per-run state on disk: atomic JSON files and exclusive claims that die with their owner.

A run directory holds ``state.json`` (phases finished so far, rewritten atomically after each phase),
``record.json`` (written last: its presence means the run is finished) and ``.claim``, a lock file
held with ``fcntl.flock`` by the worker running it. The kernel drops a flock when its process dies, even
by SIGKILL, so a claim is never stale: a restarted or second worker takes the run over at once. (On
NFS, Linux maps flock to NFS byte-range locks, which the lock manager also releases on client death.)
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from mpdit_bench.files import write_text_atomic

STATE, RECORD, CLAIM, OWNER = "state.json", "record.json", ".claim", "owner.json"


def write_json_atomic(path: Path, data: Any) -> None:
    write_text_atomic(path, json.dumps(data, indent=1, sort_keys=False, default=str) + "\n")


def read_json(path: Path) -> Any | None:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


def is_finished(run_dir: Path) -> bool:
    return (run_dir / RECORD).is_file()


@contextmanager
def claim(run_dir: Path, worker: str = "") -> Iterator[bool]:
    """Try to take the run exclusively; yields False (without waiting) when another process holds it."""
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / CLAIM, os.O_CREAT | os.O_RDWR, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        write_json_atomic(run_dir / OWNER, {"pid": os.getpid(), "host": socket.gethostname(), "worker": worker,
                                            "since": time.time()})
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def is_claimed(run_dir: Path) -> bool:
    """True while some process holds the run's claim (probed with a shared, non-blocking lock)."""
    path = run_dir / CLAIM
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops the probe's lock
    return False


def phases_of(state: dict[str, Any]) -> dict[str, Any]:
    """The finished phases of a state read from disk. ``stages`` is the key's other spelling in
    state.json, still read so that a sweep begun with it resumes."""
    return state.get("phases", state.get("stages", {}))


def load_state(run_dir: Path) -> dict[str, Any]:
    """The run's state, its finished phases under ``phases`` (see `phases_of`)."""
    state = read_json(run_dir / STATE) or {"attempts": 0, "errors": []}
    state["phases"] = phases_of(state)
    state.pop("stages", None)
    return state
