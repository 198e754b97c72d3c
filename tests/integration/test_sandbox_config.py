"""The per-sandbox Claude Code dir on a real file system: modes, ownership for a container
user, rewrites that keep Claude Code's state, removal on revoke (through the CLI and the
running service alike), and never the Claude login's token."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from broker.sandboxes import claude_dir as sc
from broker.cli import main
from broker.sandboxes import claude_config as cc
from tests.support import require_root

KEY, KEY2 = "sk-ib-" + "a" * 43, "sk-ib-" + "b" * 43


def _mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


def test_write_makes_a_private_dir_with_the_stand_in_login(tmp_path: Path) -> None:
    path = sc.write(tmp_path, "box", KEY, cc.Plan("pro"), ["/workspace"])
    assert path == tmp_path / "sandboxes" / "box"
    assert _mode(tmp_path / "sandboxes") == 0o700 and _mode(path) == 0o700
    assert sorted(p.name for p in path.iterdir()) == [".claude.json", ".credentials.json"]
    for f in path.iterdir():
        assert _mode(f) == 0o600
    creds = json.loads((path / ".credentials.json").read_text())["claudeAiOauth"]
    assert creds["accessToken"] == KEY and creds["subscriptionType"] == "pro"
    assert json.loads((path / ".claude.json").read_text())["projects"]["/workspace"]["hasTrustDialogAccepted"]
    assert sc.exists(tmp_path, "box")


def test_rotation_keeps_claude_codes_files_and_state(tmp_path: Path) -> None:
    path = sc.write(tmp_path, "box", KEY, cc.Plan())
    (path / "history.jsonl").write_text('{"display": "say hi"}\n')
    doc = json.loads((path / ".claude.json").read_text())
    (path / ".claude.json").write_text(json.dumps({**doc, "numStartups": 4}))
    sc.write(tmp_path, "box", KEY2, cc.Plan())
    assert (path / "history.jsonl").read_text() == '{"display": "say hi"}\n'
    assert json.loads((path / ".claude.json").read_text())["numStartups"] == 4
    assert KEY not in (path / ".credentials.json").read_text()


def test_links_planted_by_the_sandbox_are_never_followed(tmp_path: Path) -> None:
    """The sandbox can write into its dir: a rotation must neither read nor overwrite through a
    symlink it left there (say, to the host's Claude login)."""
    secret = tmp_path / "host-login.json"
    secret.write_text('{"claudeAiOauth": {"accessToken": "sk-ant-oat01-HOST"}}')
    victim = tmp_path / "victim.json"
    victim.write_text('{"keep": true}')
    path = sc.write(tmp_path, "box", KEY, cc.Plan())
    for name, target in ((".claude.json", secret), (".credentials.json", victim)):
        (path / name).unlink()
        (path / name).symlink_to(target)
    os.mkfifo(path / "fifo")
    sc.write(tmp_path, "box", KEY2, cc.Plan())
    assert victim.read_text() == '{"keep": true}' and "HOST" in secret.read_text()
    for name in (".claude.json", ".credentials.json"):
        assert not (path / name).is_symlink()
        assert b"sk-ant-oat01-HOST" not in (path / name).read_bytes()
    assert json.loads((path / ".credentials.json").read_text())["claudeAiOauth"]["accessToken"] == KEY2
    (path / ".claude.json").unlink()
    os.mkfifo(path / ".claude.json")  # not a regular file: replaced, never read (no hang)
    sc.write(tmp_path, "box", KEY, cc.Plan())
    assert json.loads((path / ".claude.json").read_text())["hasCompletedOnboarding"] is True


def test_container_user_gets_the_tree(tmp_path: Path) -> None:
    require_root()
    path = sc.write(tmp_path, "node", KEY, cc.Plan(), uid=1000)
    os.makedirs(path / "projects")  # as if Claude Code made it; handed over on the next write
    sc.write(tmp_path, "node", KEY2, cc.Plan())  # no --uid: ownership follows the dir
    for p in [path, path / "projects", *path.iterdir()]:
        assert p.stat().st_uid == 1000, p
    assert _mode(path / ".credentials.json") == 0o600
    sc.write(tmp_path, "node", KEY, cc.Plan(), uid=0)
    assert all(p.stat().st_uid == 0 for p in [path, *path.iterdir()])


def test_non_root_cannot_give_files_away_and_issues_no_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                           capsys) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 4242)
    with pytest.raises(sc.SandboxConfigError, match="--user 4242"):
        sc.check_uid(1000)
    sc.check_uid(4242)
    sc.check_uid(None)
    config = tmp_path / "config.yaml"
    config.write_text(f'state_dir: "{tmp_path / "state"}"\n')
    assert main(["--config", str(config), "sandbox", "add", "box", "--uid", "1000"]) == 1
    assert "--user 4242" in capsys.readouterr().err
    assert not (tmp_path / "state" / "broker.db").exists()  # no key was issued


def test_remove(tmp_path: Path) -> None:
    sc.write(tmp_path, "a", KEY, cc.Plan())
    sc.write(tmp_path, "b", KEY2, cc.Plan())
    assert sc.remove(tmp_path, "a") and not sc.remove(tmp_path, "a")
    assert sc.remove_all(tmp_path) == 1 and not (tmp_path / "sandboxes" / "b").exists()


def test_bad_name_is_refused(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="bad sandbox name"):
        sc.write(tmp_path, "../escape", KEY, cc.Plan())


def test_cli_add_and_revoke_without_a_broker(tmp_path: Path, capsys) -> None:
    login = tmp_path / "claude" / ".credentials.json"
    login.parent.mkdir()
    login.write_text(json.dumps({"claudeAiOauth": {"accessToken": "sk-ant-oat01-REAL", "refreshToken": "sk-ant-ort01-R",
                                                   "expiresAt": 1, "subscriptionType": "max",
                                                   "rateLimitTier": "default_claude_max_20x"}}))
    config = tmp_path / "config.yaml"
    config.write_text(f'state_dir: "{tmp_path / "state"}"\ncredentials: {{sources: [file], file: "{login}"}}\n')
    assert main(["--config", str(config), "sandbox", "add", "box", "--workdir", "/workspace"]) == 0
    key = capsys.readouterr().out.strip()
    box = tmp_path / "state" / "sandboxes" / "box"
    creds = json.loads((box / ".credentials.json").read_text())["claudeAiOauth"]
    assert creds["accessToken"] == key
    assert (creds["subscriptionType"], creds["rateLimitTier"]) == ("max", "default_claude_max_20x")
    assert all(b"sk-ant-" not in p.read_bytes() for p in box.iterdir())
    assert main(["--config", str(config), "sandbox", "revoke", "box"]) == 0
    assert not box.exists()


async def test_running_broker_removes_the_dir_on_revoke(make_broker) -> None:
    from broker.status.actions import Action

    b = await make_broker()
    state = b.service.config.state_dir
    for name in ("one", "two", "three"):
        sc.write(state, name, await b.add_sandbox(name), cc.Plan())
    await b.service.perform(Action.REVOKE_SANDBOX, "one")
    assert not sc.exists(state, "one") and sc.exists(state, "two")
    await b.service.perform(Action.REVOKE_ALL)
    assert list((state / "sandboxes").iterdir()) == []
