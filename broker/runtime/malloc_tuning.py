"""Give big request buffers back to the OS once they are freed (glibc only; a no-op elsewhere).

glibc serves blocks above 128 KiB with mmap, but after one is freed it raises that threshold
(up to 32 MiB), so later socket buffers come from the heap and stay with the process: after
40 bodies of 30 MiB, RSS stayed about 1 GiB above where it began. Pinning the thresholds turns
that dynamic adjustment off, so request-body memory goes back when the request ends.
The threshold sits above asyncio's 256 KiB socket read buffer: pinned below it, every
`recv` of every request mapped and unmapped a fresh 256 KiB block (system calls and a page
fault per read); bodies of megabytes are still mapped, and still go back.

glibc also gives each thread that allocates its own arena (up to eight per core): the audit,
ledger and key-store writers, the worker pool and the file watcher each kept a heap of their
own, whose freed memory no other thread reuses. One arena for the process holds about 0.5 MiB
less (idle and with 500 open streams); these threads wake a few times a second at most, and
SQLite, the one that allocates without the GIL, writes a batch every 0.1 s at most.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1
M_MMAP_THRESHOLD = -3
M_ARENA_MAX = -8


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


def limit_malloc_arenas(arenas: int = 1) -> bool:
    """True if glibc took the limit. Call it before starting threads: a thread that has
    allocated keeps the arena it got."""
    mallopt = _mallopt()
    ok = mallopt is not None and mallopt(M_ARENA_MAX, arenas) == 1
    log.debug("malloc arenas limited to %d: %s", arenas, ok)
    return ok
