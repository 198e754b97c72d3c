"""Hostile things at the credentials path: each costs one clear reason, never the token.

A FIFO used to hang every read (and SIGTERM), a symlink to /dev/zero grew RSS past 2 GB, a
200 MB file stalled the loop, and deeply nested JSON turned every request into a 500 because
RecursionError escaped the parser. Now each is refused at once and the last good token stays.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Callable

import pytest

from broker.login.file_store import FileSource
from broker.config.settings import RefreshSettings
from broker.login.token_manager import TokenManager
from tests.fakes.login import write_login
from tests.fakes.clock import FakeClock

pytestmark = pytest.mark.integration

TOKEN = "sk-ant-oat01-good-token-" + "A" * 40


def fifo(p: Path) -> None:
    os.mkfifo(p)


def dev_zero(p: Path) -> None:
    p.symlink_to("/dev/zero")


def huge(p: Path) -> None:
    with open(p, "wb") as fh:  # sparse: 200 MB to stat and read, no disk used
        fh.truncate(200 * 1024 * 1024)


def nested(p: Path) -> None:
    p.write_text('{"claudeAiOauth": ' + "[" * 200_000 + "]" * 200_000 + "}")


def directory(p: Path) -> None:
    p.mkdir()


HOSTILE: dict[str, tuple[Callable[[Path], None], str]] = {
    "fifo": (fifo, "FIFO"),
    "symlink to /dev/zero": (dev_zero, "character device"),
    "200 MB file": (huge, "more than the"),
    "deeply nested JSON": (nested, "nested too deeply"),
    "directory": (directory, "directory"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
async def test_hostile_credentials_keep_the_last_good_token_and_say_why(tmp_path: Path, case: str):
    creds = tmp_path / "claude" / ".credentials.json"
    write_login(creds, TOKEN, "sk-ant-ort01-refresh-" + "B" * 40, time.time() + 8 * 3600)
    manager = TokenManager([FileSource(creds)], None, RefreshSettings(), clock=FakeClock(time.time()),
                           lock_path=tmp_path / "lock")
    manager.load_now()
    assert await manager.token() == TOKEN

    make, words = HOSTILE[case]
    creds.unlink()
    make(creds)
    started = time.monotonic()
    await asyncio.wait_for(manager.reload("test"), timeout=10)  # a FIFO used to hang here forever
    assert time.monotonic() - started < 5
    assert await manager.token() == TOKEN  # still serving
    status = manager.status()
    assert status.state == "valid" and "keeping the last good token" in status.reason
    assert words in status.reason and str(creds) in status.reason
    assert TOKEN not in status.reason


async def test_write_back_never_replaces_a_fifo(tmp_path: Path):
    from broker.common.atomic_files import write_private

    target = tmp_path / "pipe"
    os.mkfifo(target)
    with pytest.raises(OSError, match="not a regular file"):
        write_private(target, b"{}")
    assert target.is_fifo()
