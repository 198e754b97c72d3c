"""The broker stands on its dependencies' public APIs: a release that moves an internal must
not break every new install on the day it ships. HTTP libraries are imported only through
their documented modules, and no underscored name of theirs is reached for."""

from __future__ import annotations

import ast
from pathlib import Path

BROKER = Path(__file__).resolve().parents[2] / "broker"
# The documented entry points (and http_exceptions' own __all__: HttpProcessingError);
# aiohttp.client_proto, aiohttp.http_parser, aiohttp.web_protocol... are not.
PUBLIC_MODULES = {"aiohttp", "aiohttp.web", "aiohttp.http_exceptions", "yarl", "multidict"}
WATCHED = ("aiohttp", "yarl", "multidict")
# Internals the broker once read on aiohttp objects (site._server, StreamResponse._send_headers_immediately).
KNOWN_INTERNALS = {"_server", "_send_headers_immediately", "_protocol", "_payload", "_connector", "_conns",
                   "_acquired", "_writer", "_transport"}


def _sources() -> list[tuple[Path, ast.Module]]:
    return [(path, ast.parse(path.read_text(), str(path))) for path in sorted(BROKER.rglob("*.py"))]


def test_http_libraries_are_imported_through_their_public_modules():
    bad = []
    for path, tree in _sources():
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")]
            for name in names:
                if name.split(".")[0] in WATCHED and name not in PUBLIC_MODULES:
                    bad.append(f"{path.relative_to(BROKER.parent)}:{node.lineno} imports {name}")
    assert bad == []


def test_no_known_aiohttp_internal_is_read():
    bad = [f"{path.relative_to(BROKER.parent)}:{node.lineno} .{node.attr}"
           for path, tree in _sources() for node in ast.walk(tree)
           if isinstance(node, ast.Attribute) and node.attr in KNOWN_INTERNALS
           and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))]
    assert bad == []
