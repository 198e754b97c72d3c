"""Atomic, private file writes: temp file + fsync + rename, mode 0600.

A reader (the host's Claude Code, or us after an inotify event) sees either the old file or
the new one, never half of one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def write_private(path: Path, data: bytes, mode: int = 0o600, owner: int | None = None,
                  follow: bool = True) -> None:
    """Replace `path` with `data` atomically; the file ends up with `mode` (0600 by default)
    and, when given, owned by uid (and gid) `owner` before it appears under its name.

    `follow=False` replaces a symlink at `path` instead of writing where it points: for dirs
    that someone else (a sandbox) can write into.
    """
    if follow:
        path = Path(os.path.realpath(path))  # a symlinked dotfile stays a symlink
        if path.exists() and not path.is_file():  # a FIFO or /dev/zero swapped in: never replace it
            raise OSError(f"{path} is not a regular file; not writing over it")
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)
        if owner is not None:
            os.fchown(fd, owner, owner)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    fsync_dir(path.parent)


def _temp_prefix(path: Path) -> str:
    return f".{path.name}."


def remove_leftover_temps(path: Path) -> None:
    """Remove temp files a killed writer of `path` left behind (they may hold secrets).

    Only call it while holding the lock every writer of `path` takes, or a write in
    progress loses its temp file.
    """
    path = Path(os.path.realpath(path))
    prefix = _temp_prefix(path)
    try:
        with os.scandir(path.parent) as entries:
            for entry in entries:
                if entry.name.startswith(prefix) and entry.name.endswith(".tmp") and entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
    except OSError:
        pass


def fsync_dir(directory: Path) -> None:
    """Make a rename or unlink in `directory` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not supported on this platform (Windows)
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
