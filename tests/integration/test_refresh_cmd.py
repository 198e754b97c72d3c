"""`inference-broker refresh` against a real running Service, through its real control socket."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
import yaml

from broker.cli import main


def config_for(tmp_path: Path, state_dir: Path) -> str:
    """A config file naming the running broker's state dir: where the CLI finds its socket."""
    path = tmp_path / "cli.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(state_dir)}))
    return str(path)


async def test_refresh_says_the_whole_reason_from_the_status_data(make_broker, tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    """The token endpoint's description may span lines: the command prints all of it, not the
    second line of `status`'s rendering."""
    b = await make_broker()
    b.endpoint.fail_next(500, {"error": "server_error", "error_description": "overloaded\nplease retry later"})
    code = await asyncio.to_thread(main, ["--config", config_for(tmp_path, b.state_dir), "refresh"])
    out = capsys.readouterr().out
    assert code == 0  # a failed refresh with a token still valid is not an outage
    assert out.startswith("token:    expiring (max plan): refresh failing: the token endpoint failed (500 server_error")
    assert "please retry later" in out and "token still valid for" in out
    assert b.endpoint.calls == 1
    for secret in b.secrets().values():
        assert secret not in out


async def test_refresh_with_the_store_unreadable_keeps_the_pair_and_status_and_doctor_say_so(
        make_broker, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The issue's report: a deeply nested store made `refresh` print "unreadable reply" and
    lose the pair. Here the store is a directory (unreadable and unwritable)."""
    b = await make_broker()
    creds = b.creds
    before = creds.read_bytes()
    creds.unlink()
    creds.mkdir()
    cfg = config_for(tmp_path, b.state_dir)
    code = await asyncio.to_thread(main, ["--config", cfg, "refresh"])
    out = capsys.readouterr().out
    sentence = f"the login could not be written back to file:{creds}: "
    assert code == 0 and out.startswith("token:    valid") and sentence in out
    assert "the broker holds the current login" in out and "unreadable reply" not in out
    assert b.endpoint.calls == 1 and b.endpoint.reused == 0
    await asyncio.to_thread(main, ["--config", cfg, "status"])
    assert sentence in capsys.readouterr().out
    await asyncio.to_thread(main, ["--config", cfg, "doctor"])
    assert sentence in capsys.readouterr().out
    pending = b.state_dir / "pending-login.json"
    assert pending.exists()
    creds.rmdir()
    creds.write_bytes(before)  # back as it was: its refresh token is spent, the broker's pair goes in
    await b.service.tokens.reload("watch")
    await b.service.tokens._retry_unsaved_write()
    served = await b.service.tokens.token()
    assert not pending.exists() and json.loads(creds.read_text())["claudeAiOauth"]["accessToken"] == served
    for secret in b.secrets().values():
        assert secret not in out
