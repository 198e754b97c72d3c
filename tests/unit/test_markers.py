"""A test's layer comes from its directory, so `-m "not integration"` really leaves them out.

A file added to tests/integration without a `pytestmark` line must still be deselected: the
conftest hook marks every item by the directory of its file. Checked here on the files in the
tree and on the hook itself, without collecting the tree in a child pytest.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.conftest import MARKER_BY_DIRECTORY, layer_of, pytest_collection_modifyitems

ROOT = Path(__file__).resolve().parents[2]
LAYERED = ("integration", "e2e", "reliability")


def test_layers_and_their_markers() -> None:
    assert MARKER_BY_DIRECTORY == {d: d for d in LAYERED}
    registered = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["markers"]
    assert {line.split(":", 1)[0] for line in registered} >= set(LAYERED)  # `-m` knows them


def test_every_file_in_a_layer_directory_gets_that_layer() -> None:
    files = {d: sorted((ROOT / "tests" / d).rglob("test_*.py")) for d in (*LAYERED, "unit")}
    assert all(len(files[d]) >= 5 for d in files), {d: len(f) for d, f in files.items()}
    for directory in LAYERED:
        assert {layer_of(path) for path in files[directory]} == {directory}
    assert {layer_of(path) for path in files["unit"]} == {None}  # unit tests are not swept out
    assert layer_of(ROOT / "tests" / "conftest.py") is None
    assert layer_of(ROOT / "benchmarks" / "proxy_overhead.py") is None  # outside tests/


class Collected:
    """What the hook touches on a pytest item: its path and add_marker."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.markers: list[str] = []

    def add_marker(self, marker: str) -> None:
        self.markers.append(marker)


def test_the_collection_hook_marks_items_by_their_file_s_directory(tmp_path: Path) -> None:
    unmarked = ROOT / "tests" / "integration" / "test_new_file_without_pytestmark.py"  # need not exist
    items = [Collected(unmarked), Collected(ROOT / "tests" / "e2e" / "infra" / "test_x.py"),
             Collected(ROOT / "tests" / "unit" / "test_markers.py"), Collected(tmp_path / "test_y.py")]
    pytest_collection_modifyitems(items)  # type: ignore[arg-type]
    assert [item.markers for item in items] == [["integration"], ["e2e"], [], []]


def test_this_session_s_items_carry_their_layer(request: pytest.FixtureRequest) -> None:
    """The hook is the one pytest runs: the items of this very run are marked by it."""
    for item in request.session.items:
        layer = layer_of(item.path)
        assert {m.name for m in item.iter_markers()} & set(LAYERED) == ({layer} if layer else set())
