"""Hand a sandbox-writable tree to the container's user without resolving a path in it.

The sandbox can rename, replace and link anything below its dir while the broker walks it,
and the broker may run as root: a path like `DIR/sub/file` could, by the time it is used,
lead through a link into a host directory. So the walk never resolves a path in the tree:
each directory is opened relative to its parent's descriptor with `O_NOFOLLOW`, changed
through that descriptor, and its entries are changed relative to it without following links
(a link swapped in gets the new owner itself; what it points at is never touched). The walk
keeps one descriptor per level and goes at most `MAX_DEPTH` levels down.
"""

from __future__ import annotations

import os
from pathlib import Path

MAX_DEPTH = 64  # Claude Code's own state is a few levels deep
_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def chown_tree(path: Path, uid: int, gid: int | None = None, max_depth: int = MAX_DEPTH) -> None:
    """Give `path` (a directory the broker made, not a link) and everything below it to
    `uid`:`gid` (`gid` defaults to `uid`)."""
    gid = uid if gid is None else gid
    top = os.open(path, _DIR)
    stack = [(top, iter(()))]
    try:
        os.fchown(top, uid, gid)
        stack[-1] = (top, iter(_chown_entries(top, uid, gid)))
        while stack:
            fd, subdirs = stack[-1]
            name = next(subdirs, None)
            if name is None:
                os.close(stack.pop()[0])
                continue
            if len(stack) > max_depth:
                continue
            try:
                child = os.open(name, _DIR, dir_fd=fd)
            except OSError:  # gone, or swapped for a link or a file since it was listed: skip it
                continue
            stack.append((child, iter(())))
            os.fchown(child, uid, gid)
            stack[-1] = (child, iter(_chown_entries(child, uid, gid)))
    finally:
        for fd, _ in stack:
            os.close(fd)


def _chown_entries(fd: int, uid: int, gid: int) -> list[str]:
    """Change every entry of the directory open as `fd` that is not a directory (links
    themselves, never their targets); return the names of its directories."""
    subdirs = []
    with os.scandir(fd) as entries:
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    subdirs.append(entry.name)
                else:
                    os.chown(entry.name, uid, gid, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:  # removed since listed
                continue
    return subdirs
