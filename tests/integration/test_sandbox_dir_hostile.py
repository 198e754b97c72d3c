"""What a hostile sandbox can plant in its own Claude Code dir, met by `sandbox rotate` and
`docker-args --rotate` on the host: links swapped in while the broker hands the tree to the
container user, JSON nested past any parser's stack, directories where the broker's files go.
None of it may touch a host file, crash a host command, or leave the sandbox with a revoked key."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from broker.sandboxes import claude_config as cc
from broker.sandboxes import claude_dir as sc
from tests.support import require_root

KEY, KEY2 = "sk-ib-" + "a" * 43, "sk-ib-" + "b" * 43


def _host_dir(tmp_path: Path) -> Path:
    host = tmp_path / "host"
    host.mkdir()
    for i in range(20):
        (host / f"secret{i}").write_text("root's")
    os.chown(host, 0, 0)
    return host


def _swap_when_opened(monkeypatch: pytest.MonkeyPatch, sub: Path, host: Path) -> list[bool]:
    """The sandbox's move, at the worst moment: the walker has listed `sub` as a directory and
    now opens it (by path or relative to its parent's fd) to go inside; just then `sub`
    becomes a link to a host directory."""
    swapped: list[bool] = []

    def swap(target: Any) -> None:
        if not swapped and not isinstance(target, int) and os.fspath(target).rstrip("/").endswith("/sub") \
                or not swapped and target == "sub":
            os.rename(sub, sub.with_name("sub.moved"))
            os.symlink(host, sub)
            swapped.append(True)

    real_open, real_scandir = os.open, os.scandir

    def opening(path: Any, *args: Any, **kw: Any) -> int:
        swap(path)
        return real_open(path, *args, **kw)

    def scanning(path: Any = ".") -> Any:
        swap(path)
        return real_scandir(path)

    monkeypatch.setattr(os, "open", opening)
    monkeypatch.setattr(os, "scandir", scanning)
    return swapped


def test_a_subdir_swapped_for_a_link_mid_walk_never_hands_host_files_over(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    require_root()
    host = _host_dir(tmp_path)
    path = sc.write(tmp_path, "box", KEY, cc.Plan(), uid=1000)
    (path / "sub").mkdir()
    (path / "sub" / "session.jsonl").write_text("{}")
    swapped = _swap_when_opened(monkeypatch, path / "sub", host)
    sc.write(tmp_path, "box", KEY2, cc.Plan(), uid=1000)
    monkeypatch.undo()
    assert swapped  # the race happened
    assert all(p.stat().st_uid == 0 for p in [host, *host.iterdir()])
    assert (path / ".credentials.json").stat().st_uid == 1000


def test_a_link_already_in_place_is_handed_over_itself_never_its_target(tmp_path: Path) -> None:
    require_root()
    host = _host_dir(tmp_path)
    path = sc.write(tmp_path, "box", KEY, cc.Plan(), uid=1000)
    (path / "sub").symlink_to(host)
    (path / "file").symlink_to(host / "secret0")
    sc.write(tmp_path, "box", KEY2, cc.Plan(), uid=1000)
    assert all(p.stat().st_uid == 0 for p in [host, *host.iterdir()])
    assert os.lstat(path / "sub").st_uid == 1000


def test_a_tree_deeper_than_the_walk_goes_costs_no_crash(tmp_path: Path) -> None:
    require_root()
    path = sc.write(tmp_path, "box", KEY, cc.Plan(), uid=1000)
    deep = path
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(300):  # past Python's stack for a recursive walk of fds and frames
        os.mkdir("d", dir_fd=fd)
        child = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = child
    os.close(fd)
    sc.write(tmp_path, "box", KEY2, cc.Plan(), uid=1000)
    assert (path / "d" / "d").stat().st_uid == 1000 and deep.stat().st_uid == 1000
