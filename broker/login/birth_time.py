"""A file's birth time in epoch milliseconds, as Node/Bun report `birthtimeMs`.

Python's `os.stat` has no birth time on Linux; Claude Code's lock owner record names the
lock directory by it, so we ask the kernel through `statx(2)` (glibc 2.28+), and use
`st_birthtime` where the platform has it (macOS, BSD).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import sys
from pathlib import Path

_AT_FDCWD = -100
_STATX_BTIME = 0x800
_BTIME_OFFSET = 80  # struct statx: stx_btime follows 64 bytes of fields and stx_atime


def birthtime_ms(path: Path) -> float | None:
    """None when the file system or platform does not record it."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    if hasattr(st, "st_birthtime"):
        return st.st_birthtime * 1000.0
    libc = _libc()
    if libc is None:
        return None
    buf = ctypes.create_string_buffer(256)
    if libc.statx(_AT_FDCWD, os.fsencode(path), 0, _STATX_BTIME, buf) != 0:
        return None
    mask = int.from_bytes(buf.raw[0:4], sys.byteorder)
    if not mask & _STATX_BTIME:
        return None
    sec = int.from_bytes(buf.raw[_BTIME_OFFSET:_BTIME_OFFSET + 8], sys.byteorder, signed=True)
    nsec = int.from_bytes(buf.raw[_BTIME_OFFSET + 8:_BTIME_OFFSET + 12], sys.byteorder)
    value = sec * 1000 + nsec / 1e6  # Node's msFromTimeSpec
    return value if value > 0 else None


def _libc():
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name, use_errno=True)
        libc.statx  # noqa: B018 - glibc older than 2.28 lacks it
    except (OSError, AttributeError):
        return None
    return libc
