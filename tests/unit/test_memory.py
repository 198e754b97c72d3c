"""The one process-wide setting the broker makes: glibc's malloc thresholds, pinned at start.

Measured by what a person sees (resident memory after large requests are gone), each case in
a fresh interpreter, not by mallopt's return value.
"""

from __future__ import annotations

import platform
import subprocess
import sys

import pytest

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"

# A 16 MiB body raises glibc's dynamic mmap threshold to 16 MiB; later 1 MiB buffers (request
# bodies, socket reads) then come from the heap, and 24 MiB of them freed stay under the
# raised trim threshold (32 MiB): resident, for good, unless the thresholds are pinned.
PROBE = """
import sys
def rss_mib():
    with open('/proc/self/statm') as f:
        return int(f.read().split()[1]) * 4096 / 2**20
if sys.argv[1] == 'pinned':
    from broker.runtime.runner import tune_process
    tune_process()
big = bytearray(16 << 20); del big
base = rss_mib()
blocks = [bytearray(1 << 20) for _ in range(24)]
del blocks
print(round(rss_mib() - base, 1))
"""


def kept_after_large_bodies(mode: str) -> float:
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True)
    return float(out.stdout)


@pytest.mark.skipif(not GLIBC, reason="glibc's allocator only")
def test_pinned_thresholds_give_large_buffers_back_to_the_os() -> None:
    unpinned, pinned = kept_after_large_bodies("default"), kept_after_large_bodies("pinned")
    assert unpinned > 16, f"the probe no longer shows glibc keeping freed buffers ({unpinned} MiB)"
    assert pinned < 4, f"{pinned} MiB stayed resident after the buffers were freed"

