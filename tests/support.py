"""Helpers shared by every test layer."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require(condition: bool, reason: str) -> None:
    """Skip with `reason` on a developer machine that lacks a tool; fail in CI.

    CI installs everything the suite needs, so a missing tool there is a broken
    install step, not a reason to pass quietly.
    """
    if condition:
        return
    if in_ci():
        pytest.fail(f"CI must provide this, but: {reason}", pytrace=False)
    pytest.skip(reason)


def require_tools(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    require(not missing, f"missing tools: {', '.join(missing)}")


def require_root() -> None:
    require(os.geteuid() == 0, "needs root (network namespaces, docker)")


def broker_port(proc: subprocess.Popen, state: Path, stderr: Path, timeout: float = 20.0) -> int:
    """Wait until a `broker run` process serves (listen.json written, control socket up); its port."""
    import json
    import time

    from broker.adapters import control

    listen = state / "listen.json"
    deadline = time.monotonic() + timeout
    while not (listen.exists() and control.is_running(state / "broker.sock")):
        assert proc.poll() is None, f"the broker exited: {stderr.read_text()}"
        assert time.monotonic() < deadline, f"broker not ready within {timeout} s"
        time.sleep(0.02)
    (bound,) = json.loads(listen.read_text())["listen"]
    return int(bound.rsplit(":", 1)[1])


def stop_broker(proc: subprocess.Popen, timeout: float = 15.0) -> bool:
    """SIGTERM, then SIGKILL after `timeout`; True if SIGTERM was enough."""
    import signal

    if proc.poll() is not None:
        return True
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)
        return False
