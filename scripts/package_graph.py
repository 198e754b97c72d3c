"""The packages under broker/ and the arrows between them, read from the imports.

`python scripts/package_graph.py` prints the picture; `--write` puts it into
docs/architecture.md between its markers. tests/unit/test_layers.py checks that the picture
there is the one the imports draw, and that the arrows form no cycle.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "broker"
DOC = ROOT / "docs" / "architecture.md"
BEGIN, END = "<!-- package-graph:begin -->", "<!-- package-graph:end -->"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_imports(path: Path) -> list[str]:
    """Every module `path` imports: at the top, inside functions and under TYPE_CHECKING
    alike (a type-only import is still an arrow)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append(node.module)
            for a in node.names:  # `from broker.login import oauth` imports broker.login.oauth
                sub = ROOT / Path(*node.module.split("."), a.name)
                if node.module.startswith("broker") and (sub.with_suffix(".py").exists() or sub.is_dir()):
                    found.append(f"{node.module}.{a.name}")
    return found


def imported_modules(path: Path) -> list[str]:
    """Every broker module `path` imports."""
    return [m for m in all_imports(path) if m == "broker" or m.startswith("broker.")]


def package_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and (PACKAGE / parts[1]).is_dir() else None


def package_edges() -> dict[str, set[str]]:
    edges: dict[str, set[str]] = {p.name: set() for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    for path in PACKAGE.rglob("*.py"):
        me = package_of(module_name(path))
        if me is None:
            continue
        for target in imported_modules(path):
            other = package_of(target)
            if other is not None and other != me:
                edges[me].add(other)
    return edges


def cycle(edges: dict[str, set[str]]) -> list[str] | None:
    """One cycle among the packages, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(edges):
        if node not in state and (found := visit(node)):
            return found
    return None


def depth(edges: dict[str, set[str]]) -> dict[str, int]:
    """0 for a package that imports no other; else one more than the deepest it imports."""
    memo: dict[str, int] = {}

    def d(node: str) -> int:
        if node not in memo:
            memo[node] = 0
            memo[node] = 1 + max((d(n) for n in edges[node]), default=-1)
        return memo[node]

    return {n: d(n) for n in edges}


def picture(edges: dict[str, set[str]]) -> str:
    """Top to bottom: each package and the packages it imports."""
    ranks = depth(edges)
    order = sorted(edges, key=lambda n: (-ranks[n], n))
    width = max(map(len, order))
    lines = [f"{n.ljust(width)} -> {', '.join(sorted(edges[n])) or '(nothing)'}" for n in order]
    return "```\n" + "\n".join(lines) + "\n```"


def in_doc(text: str) -> str | None:
    if BEGIN not in text or END not in text:
        return None
    return text.split(BEGIN, 1)[1].split(END, 1)[0].strip()


def main(argv: list[str]) -> int:
    drawn = picture(package_edges())
    if "--write" in argv:
        text = DOC.read_text(encoding="utf-8")
        head, rest = text.split(BEGIN, 1)
        DOC.write_text(f"{head}{BEGIN}\n{drawn}\n{END}{rest.split(END, 1)[1]}", encoding="utf-8")
    print(drawn)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
