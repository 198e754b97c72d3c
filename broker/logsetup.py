"""Logging: quiet by default, to stderr and a private rotating file, secrets scrubbed."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from broker.adapters.private import PrivateRotatingHandler
from broker.core.redact import RedactingFilter


def setup_logging(level: str = "info", log_file: Path | None = None) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    fmt = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%d %H:%M:%S")
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr)]
    if log_file is not None:
        handlers.append(PrivateRotatingHandler(log_file, 5 * 1024 * 1024, 3))  # 0600, after rotation too
    for h in handlers:
        h.setFormatter(fmt)
        h.addFilter(RedactingFilter())  # on the handler: covers records from every library
        root.addHandler(h)
    root.setLevel(getattr(logging, level.upper(), logging.INFO))
    for noisy in ("aiohttp.access", "watchdog", "asyncio", "filelock", "PIL"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
