"""Helpers shared by every test layer."""

from __future__ import annotations

import os
import shutil

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

