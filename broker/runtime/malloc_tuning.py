"""Give big request buffers back to the OS once they are freed (glibc only; a no-op elsewhere).

glibc serves blocks above 128 KiB with mmap, but after one is freed it raises that threshold
(up to 32 MiB), so later socket buffers come from the heap and stay with the process: after
40 bodies of 30 MiB, RSS stayed about 1 GiB above where it began. Pinning the thresholds turns
that dynamic adjustment off, so request-body memory goes back when the request ends.
The threshold sits above asyncio's 256 KiB socket read buffer: pinned below it, every
`recv` of every request mapped and unmapped a fresh 256 KiB block (system calls and a page
fault per read); bodies of megabytes are still mapped, and still go back.

The runner sets this once, at process start (`runner.tune_process`), never a library or a
server object: tests that start a proxy in-process keep their own allocator settings.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3


def _mallopt():  # noqa: ANN202 - ctypes' function, or None where there is no glibc
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # musl and others: nothing to tune
        return None
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return mallopt


def pin_malloc_thresholds(mmap_threshold: int = 512 * 1024, trim_threshold: int = 1024 * 1024) -> bool:
    """True if glibc's mallopt took both settings."""
    mallopt = _mallopt()
    if mallopt is None:
        return False
    ok = mallopt(M_MMAP_THRESHOLD, mmap_threshold) == 1 and mallopt(M_TRIM_THRESHOLD, trim_threshold) == 1
    log.debug("malloc thresholds pinned: %s", ok)
    return ok

