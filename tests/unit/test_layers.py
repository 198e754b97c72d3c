"""Imports point downward only, and a module's layer shows in its path (docs/architecture.md).

Every import in `broker/` (lazy ones inside functions too) is checked against the layer
table below; core also may not import the libraries that do I/O or drive a desktop.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "broker"

# Lower number = lower layer. The first matching prefix wins.
LAYERS = [
    ("broker.core.", 0),
    ("broker.adapters.", 1),
    ("broker.login.token_manager", 2),
    ("broker.login.refresh_steps", 2),
    ("broker.login.token_events", 2),
    ("broker.sandboxes.access", 2),
    ("broker.sandboxes.wiring", 2),
    ("broker.login.source_setup", 2),
    ("broker.usage.plan_watch", 2),
    ("broker.usage.accounting", 2),
    ("broker.runtime.control_ops", 3),
    ("broker.dashboard", 2),  # the dashboard's pages: app level, they read the service
    ("broker.runtime.service", 3),
    ("broker.tray", 4),
    ("broker.runtime.runner", 5),
    ("broker.cli", 6),
    ("broker.__main__", 6),
    ("broker", 0),  # the package itself: __version__
]
CORE_FORBIDDEN = ("aiohttp", "pystray", "keyring", "watchdog", "sqlite3", "subprocess", "PIL", "filelock", "asyncio")
MAX_LINES = 300
CORE_EXEMPT = {"broker.common.clock": {"asyncio"}}  # SystemClock's sleeps: the only awaitables in core
OVERSIZE_ALLOWED: set[str] = set()


def layer(module: str) -> int:
    for prefix, rank in LAYERS:
        if module == prefix.rstrip(".") or module.startswith(prefix):
            return rank
    raise AssertionError(f"{module} is in no layer: add it to LAYERS and docs/architecture.md")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            # `from broker import runner` imports the module broker.runtime.runner
            if node.module == "broker":
                found += [f"broker.{a.name}" for a in node.names
                          if (PACKAGE / f"{a.name}.py").exists() or (PACKAGE / a.name).is_dir()]
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_downward(path: Path) -> None:
    me = module_name(path)
    mine = layer(me)
    upward = [m for m in imports(path) if m.startswith("broker") and layer(m) > mine]
    assert not upward, f"{me} (layer {mine}) imports a layer above it: {upward}"
    if mine == 0:
        bad = [m for m in imports(path)
               if m.split(".")[0] in CORE_FORBIDDEN and m not in CORE_EXEMPT.get(me, set())]
        assert not bad, f"{me} is core (pure, synchronous) but imports {bad}"


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(ROOT)))
def test_modules_stay_small(path: Path) -> None:
    rel = str(path.relative_to(ROOT))
    lines = len(path.read_text(encoding="utf-8").splitlines())
    assert rel in OVERSIZE_ALLOWED or lines <= MAX_LINES, f"{rel} has {lines} lines (limit {MAX_LINES})"
