"""The malloc settings take where glibc is, and are a no-op elsewhere."""

from __future__ import annotations

import platform
import subprocess
import sys

GLIBC = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"


def test_settings_take_on_glibc_only() -> None:
    code = ("from broker.adapters.memory import limit_malloc_arenas, pin_malloc_thresholds; "
            "print(limit_malloc_arenas(), pin_malloc_thresholds())")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == [str(GLIBC)] * 2
