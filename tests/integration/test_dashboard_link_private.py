"""The one-time dashboard link is a secret: another local user who reads it first (from
/proc/*/cmdline or /proc/*/environ, which every user may read) takes the session. Opening the
dashboard, from the CLI or the tray, must put it on no command line and in no environment: a
fake browser (and a fake xdg-open) record their argv and environment to check."""

from __future__ import annotations

import asyncio
import json
import os
import re
import stat
import sys
from pathlib import Path
from types import SimpleNamespace

from tests.fakes.eventually import eventually_async
from tests.integration.test_dashboard import get
from tests.integration.test_usage_ledger import write_config

FAKE = """#!{python}
import json, os, sys
with open({record!r}, "a") as fh:
    fh.write(json.dumps({{"argv": sys.argv, "env": dict(os.environ)}}) + "\\n")
"""


def _fakes(tmp_path: Path) -> tuple[Path, Path]:
    """A fake browser and a fake xdg-open, both on a private PATH dir; what they saw goes to a file."""
    bin_dir, record = tmp_path / "bin", tmp_path / "opened.jsonl"
    bin_dir.mkdir()
    for name in ("fake-browser", "xdg-open"):
        exe = bin_dir / name
        exe.write_text(FAKE.format(python=sys.executable, record=str(record)))
        exe.chmod(0o755)
    return bin_dir, record


def _opened(record: Path) -> dict:
    return json.loads(record.read_text().splitlines()[0])


def _written(record: Path) -> bool:
    """The opener has written its whole line (it may still be writing when the file appears)."""
    return record.exists() and record.read_text().endswith("\n")


def _the_link(seen: dict) -> str:
    """The login link the opener was handed: in its argument, or in the file it was given."""
    target = seen["argv"][1]
    path = Path(target.removeprefix("file://"))
    text = path.read_text() if path.is_file() else target
    return re.search(r"http://127\.0\.0\.1:\d+/login\?t=[A-Za-z0-9_\-]+", text).group()


async def _check(b, seen: dict) -> None:
    link = _the_link(seen)
    token = link.partition("?t=")[2]
    assert token not in " ".join(seen["argv"]), "the one-time link is on a command line"
    assert not any(token in f"{k}={v}" for k, v in seen["env"].items()), "the link is in an environment"
    page = Path(seen["argv"][1].removeprefix("file://"))
    assert stat.S_IMODE(page.stat().st_mode) == 0o600
    status, headers, _ = await get(link)  # the browser follows the page's redirect: the link works
    assert status == 303 and "Set-Cookie" in headers


async def test_the_cli_opens_the_dashboard_without_the_link_on_a_command_line(make_broker, tmp_path: Path) -> None:
    b = await make_broker()
    config = write_config(b, tmp_path)
    bin_dir, record = _fakes(tmp_path)
    env = {**os.environ, "BROWSER": str(bin_dir / "fake-browser"), "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    env.pop("DISPLAY", None)
    proc = await asyncio.create_subprocess_exec(sys.executable, "-m", "broker", "--config", str(config), "dashboard",
                                                env=env, stdout=asyncio.subprocess.PIPE)
    out, _ = await proc.communicate()
    assert proc.returncode == 0 and b"login?t=" not in out
    await eventually_async(lambda: _written(record), what="the browser was started")
    await _check(b, _opened(record))


async def test_the_tray_opens_the_dashboard_without_the_link_on_a_command_line(make_broker, tmp_path: Path,
                                                                               monkeypatch) -> None:
    from broker.status.actions import Action
    from broker.tray.view import Tray

    b = await make_broker()
    bin_dir, record = _fakes(tmp_path)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    monkeypatch.setattr(sys, "platform", "linux")
    tray = SimpleNamespace(service=b.service)  # the tray's own chore, without a display
    await Tray._face_local(tray, Action.OPEN_DASHBOARD)
    await eventually_async(lambda: _written(record), what="xdg-open was started")
    await _check(b, _opened(record))
