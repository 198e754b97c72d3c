"""What a hostile sandbox can plant in its own Claude Code dir, met by `sandbox rotate` and
`docker-args --rotate` on the host: links swapped in while the broker hands the tree to the
container user, JSON nested past any parser's stack, directories where the broker's files go.
None of it may touch a host file, crash a host command, or leave the sandbox with a revoked key."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from broker.cli import main
from broker.sandboxes import claude_config as cc
from broker.sandboxes import claude_dir as sc
from broker.sandboxes.key_store import KeyStore
from broker.sandboxes.keys import match_key
from tests.fakes.broker_process import BrokerProcess
from tests.support import require_root

KEY, KEY2 = "sk-ib-" + "a" * 43, "sk-ib-" + "b" * 43
DEEP = "[" * 200_000 + "]" * 200_000


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


@pytest.mark.parametrize("planted", ["deep config", "deep login", "dir login", "dir config", "huge config"])
def test_planted_files_crash_no_host_command(tmp_path: Path, planted: str) -> None:
    path = sc.write(tmp_path, "box", KEY, cc.Plan())
    what, name = planted.split(" ")
    target = path / (cc.CONFIG_FILE if name == "config" else cc.CREDENTIALS_FILE)
    target.unlink()
    if what == "deep":
        target.write_text(DEEP)
    elif what == "dir":
        target.mkdir()
        (target / "inside").write_text("x")
    else:
        target.write_bytes(b'{"a": "' + b"x" * (20 * 1024 * 1024) + b'"}')
    assert sc.read_key(tmp_path, "box") in (None, KEY)
    sc.write(tmp_path, "box", KEY2, cc.Plan(), ["/workspace"])
    assert sc.read_key(tmp_path, "box") == KEY2
    doc = json.loads((path / cc.CONFIG_FILE).read_text())
    assert doc["hasCompletedOnboarding"] is True


def test_config_nested_just_within_the_parser_is_replaced_not_a_crash() -> None:
    text = "[" * 900 + "]" * 900  # json.loads takes it; writing it back indented would not
    assert cc.parse_config('{"a": ' + text + "}") is None
    assert cc.parse_config(DEEP) is None
    assert cc.stand_in_key('{"claudeAiOauth": ' + "[" * 5000 + "]" * 5000 + "}") is None


def _cli(tmp_path: Path) -> list[str]:
    config = tmp_path / "config.yaml"
    config.write_text(f'state_dir: "{tmp_path / "state"}"\ncredentials: {{sources: [file], file: '
                      f'"{tmp_path / "none.json"}"}}\n')
    return ["--config", str(config)]


def _key_now(tmp_path: Path) -> tuple[str | None, str | None]:
    """The key in the sandbox's login, and whose key the key store says it is."""
    with KeyStore(tmp_path / "state" / "broker.db") as store:
        hashes = store.hashes()
    key = sc.read_key(tmp_path / "state", "box")
    return key, (match_key(key, hashes) if key else None)


ROTATES = [["sandbox", "rotate", "box"], ["docker-args", "box", "--rotate"]]


@pytest.mark.parametrize("command", ROTATES)
@pytest.mark.parametrize("planted", ["deep", "dir"])
def test_rotate_past_planted_files(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str],
                                   planted: str) -> None:
    cfg = _cli(tmp_path)
    assert main([*cfg, "sandbox", "add", "box"]) == 0
    old = capsys.readouterr().out.strip()
    box = tmp_path / "state" / "sandboxes" / "box"
    for name in (cc.CONFIG_FILE, cc.CREDENTIALS_FILE):
        (box / name).unlink()
        if planted == "deep":
            (box / name).write_text(DEEP)
        else:
            (box / name).mkdir()
    assert main([*cfg, *command]) == 0
    key, owner = _key_now(tmp_path)
    assert owner == "box" and key != old


@pytest.mark.parametrize("command", ROTATES)
@pytest.mark.parametrize("step", ["prepare", "write"])
def test_rotate_is_all_or_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str],
                                  step: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Whatever fails while the sandbox's dir is read and prepared fails before the key
    changes, and (with no broker running) a failed write of the new login undoes the key
    change: the old key stays valid and stays in the sandbox's login."""
    cfg = _cli(tmp_path)
    assert main([*cfg, "sandbox", "add", "box"]) == 0
    old = capsys.readouterr().out.strip()

    def fails(*args: Any) -> Any:
        raise sc.SandboxConfigError("cannot prepare the dir")

    if step == "prepare":
        monkeypatch.setattr(cc, "config_doc", fails)
    else:
        monkeypatch.setattr(sc.Prepared, "commit", fails)
    assert main([*cfg, *command]) == 1
    assert "cannot prepare the dir" in capsys.readouterr().err
    assert _key_now(tmp_path) == (old, "box")


def test_doctor_reads_a_planted_login_as_untrusted(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _cli(tmp_path)
    assert main([*cfg, "sandbox", "add", "box"]) == 0
    box = tmp_path / "state" / "sandboxes" / "box"
    (box / cc.CREDENTIALS_FILE).write_text('{"claudeAiOauth": ' + DEEP + "}")
    main([*cfg, "doctor", "--sandbox", "box"])
    assert "sandbox 'box': its Claude Code dir holds no key" in capsys.readouterr().out


@pytest.mark.parametrize("command", [*ROTATES, ["sandbox", "add", "fresh"]])
def test_a_running_broker_takes_back_a_key_the_login_could_not_be_written_with(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], command: list[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a running broker the key changes first; when the new login then cannot be
    written, the broker takes the key back: the old key works again (a new sandbox is gone)."""
    broker = BrokerProcess(tmp_path / "b")
    broker.start()
    try:
        cfg = ["--config", str(broker.config_path)]
        assert main([*cfg, "sandbox", "add", "box"]) == 0
        old = capsys.readouterr().out.strip()

        def fails(*args: Any) -> Any:
            raise sc.SandboxConfigError("cannot write the login")

        monkeypatch.setattr(sc.Prepared, "commit", fails)
        assert main([*cfg, *command]) == 1
        assert "cannot write the login" in capsys.readouterr().err
        with KeyStore(broker.state_dir / "broker.db") as store:
            hashes = store.hashes()
        assert set(hashes) == {"box"}, hashes
        assert match_key(old, hashes) == "box" and sc.read_key(broker.state_dir, "box") == old
    finally:
        broker.stop()
