"""Atomic file writes that leave nothing behind.

A file is written to a temporary name in the same folder and renamed over the target, so a
reader sees the old file or the new one, never half of one. The temporary name carries the
writing process's id (``.<name>.<pid>.<random>.tmp``); a write that is killed outright
(``kill -9``, power loss) cannot clean up after itself, so each later write of a file in that
folder removes the leftovers of processes that no longer run.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

__all__ = ["atomic_write"]


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # another user's process, or no way to tell: leave its file alone
    return True


def sweep_stale(folder: Path) -> int:
    """Remove temporary files of dead writers in ``folder``; returns how many."""
    removed = 0
    try:
        names = os.listdir(folder)
    except OSError:
        return 0
    for name in names:
        parts = name.split(".")
        if not (name.startswith(".") and name.endswith(".tmp") and len(parts) >= 5):
            continue
        try:
            pid = int(parts[-3])
        except ValueError:
            continue
        if pid > 0 and not _alive(pid):
            try:
                os.unlink(folder / name)
                removed += 1
            except OSError:
                pass
    return removed


def atomic_write(path, write, *, binary: bool = False, keep_mode: bool = True) -> None:
    """Write ``path`` atomically: ``write(fh)`` fills an open temporary file, which is synced
    and renamed over ``path``. The file gets the mode a plain ``open()`` would give it (or the
    old file's, with ``keep_mode``)."""
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    sweep_stale(folder)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name[:64]}.{os.getpid()}.", suffix=".tmp",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8"})) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        if keep_mode and path.exists():
            mode = path.stat().st_mode & 0o7777
        else:
            umask = os.umask(0)
            os.umask(umask)
            mode = 0o666 & ~umask
        os.chmod(tmp, mode)  # mkstemp makes the file private
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
