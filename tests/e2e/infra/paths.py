"""Where the e2e infrastructure keeps things between runs and during one."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

CACHE_ENV = "INFERENCE_BROKER_TEST_CACHE"


def cache_dir() -> Path:
    """Survives between runs (docker's data-root, so built images stay): $CACHE_ENV or XDG."""
    base = os.environ.get(CACHE_ENV) or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "inference-broker-tests"
    )
    path = Path(base)
    path.mkdir(parents=True, exist_ok=True)
    return path


def short_tmp(prefix: str) -> Path:
    """A fresh directory with a short path: unix socket paths are limited to 108 bytes."""
    return Path(tempfile.mkdtemp(prefix=prefix, dir="/tmp"))
