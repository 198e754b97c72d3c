"""The layout holds: one package per concern, no cycle between packages, pure decisions kept
free of I/O frameworks, and the picture in docs/architecture.md drawn from the imports.

Every import counts, lazy ones inside functions and type-only ones under TYPE_CHECKING too.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "broker"

_spec = importlib.util.spec_from_file_location("package_graph", ROOT / "scripts" / "package_graph.py")
graph = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(graph)

# The decisions: synchronous, no sockets, no threads, no disk, no desktop. Each is tested without
# any of those; the I/O modules beside them only move bytes and call them.
PURE = {
    "broker.common.api_errors", "broker.common.clock", "broker.common.errors", "broker.common.fault_points",
    "broker.common.redact", "broker.common.untrusted_text", "broker.common.wording",
    "broker.config.fields", "broker.config.listen", "broker.config.profiles", "broker.config.settings",
    "broker.dashboard.auth",
    "broker.login.credentials", "broker.login.pending", "broker.login.refresh_timing", "broker.login.sources",
    "broker.login.token_state", "broker.login.token_status", "broker.login.writeback",
    "broker.proxy.audit_policy", "broker.proxy.connection_limits", "broker.proxy.exchange",
    "broker.proxy.guards", "broker.proxy.headers", "broker.proxy.inflight", "broker.proxy.protocols",
    "broker.proxy.request_body", "broker.proxy.scrub", "broker.proxy.throttle",
    "broker.sandboxes.claude_config", "broker.sandboxes.engine_args", "broker.sandboxes.info",
    "broker.sandboxes.keys",
    "broker.sandboxes.engines",
    "broker.sandboxes.engines_argv",
    "broker.sandboxes.engines_check",
    "broker.status.actions", "broker.status.snapshot", "broker.status.words",
    "broker.tray.menu", "broker.tray.notifications",
    "broker.usage.budget", "broker.usage.clients", "broker.usage.limit_alerts", "broker.usage.plan_limits",
    "broker.usage.reply_usage", "broker.usage.report",
}
FORBIDDEN = ("aiohttp", "pystray", "keyring", "watchdog", "sqlite3", "subprocess", "PIL", "filelock",
             "asyncio", "socket")
EXEMPT = {"broker.common.clock": {"asyncio"}}  # SystemClock's sleeps: the only awaitables among them
MAX_LINES = 600  # a backstop for a module that grew a second concern, not a target

SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_only_packages_at_the_top() -> None:
    loose = sorted(p.name for p in PACKAGE.glob("*.py") if p.name not in ("__init__.py", "__main__.py"))
    assert not loose, f"modules loose at broker/'s top (put each in the package of its concern): {loose}"


def test_packages_import_each_other_without_a_cycle() -> None:
    assert graph.cycle(graph.package_edges()) is None


def test_the_architecture_picture_is_the_one_the_imports_draw() -> None:
    drawn = graph.picture(graph.package_edges())
    assert graph.in_doc(graph.DOC.read_text(encoding="utf-8")) == drawn, (
        "docs/architecture.md's package picture is stale: run `python scripts/package_graph.py --write`")


def test_every_pure_module_exists() -> None:
    missing = [m for m in PURE if not (ROOT / (m.replace(".", "/") + ".py")).exists()]
    assert not missing, f"PURE names modules that are gone: {missing}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_modules_stay_pure(path: Path) -> None:
    me = graph.module_name(path)
    if me not in PURE:
        return
    imported = graph.all_imports(path)
    bad = [m for m in imported if m.split(".")[0] in FORBIDDEN and m not in EXEMPT.get(me, set())]
    assert not bad, f"{me} decides, so it may not import {bad}"
    impure = [m for m in graph.imported_modules(path) if m.count(".") >= 2 and m not in PURE]
    assert not impure, f"{me} decides, so it may only import other pure modules, not {impure}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_one_concern_sized(path: Path) -> None:
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert lines <= MAX_LINES, f"{path.relative_to(ROOT)} has {lines} lines: does it hold two things?"

