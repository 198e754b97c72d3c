"""SIGKILL during write-back, 100 times: the login is always one complete document, 0600,
and what a killed broker leaves behind never blocks Claude Code longer than its stale time.

A forked child runs the real refresh-and-write-back path in a loop (Claude Code's refresh
locks, the storage-write lock, the compare-and-swap, the atomic write) and is killed at a
random moment; the parent then inspects the directory as Claude Code would find it.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from pathlib import Path

import pytest

from broker.login.claude_locks import OWNER_RECORD, HostLocks
from broker.login.file_store import FileSource
from tests.fakes.login import UNKNOWN_FIELDS, write_login

pytestmark = pytest.mark.integration

KILLS = 100
STALE_2_1_197 = 10.0  # the shortest stale time of a Claude Code release


def write_back_forever(creds: Path) -> None:
    """The child: refresh-shaped write-backs, back to back, until killed."""
    source = FileSource(creds, HostLocks(creds.parent, heartbeat=0.5))
    while True:
        with source.refresh_lock():
            base = source.load()
            assert base is not None
            k = int(base.access_token.rsplit("-", 1)[1]) + 1
            source.write_back(base, base.rotated(f"sk-ant-oat01-{k}", f"sk-ant-ort01-{k}", time.time() + 8 * 3600))


def test_sigkill_during_write_back_leaves_a_whole_login_and_no_lasting_lock(tmp_path):
    creds = tmp_path / "claude" / ".credentials.json"
    write_login(creds, "sk-ant-oat01-0", "sk-ant-ort01-0", time.time() + 3600)
    locks = HostLocks(creds.parent)
    lock_paths = [*(lk.path for lk in locks.refresh_locks()), locks.storage_lock().path]
    left_locks = 0
    last = 0
    for _ in range(KILLS):
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the child never returns
            try:
                write_back_forever(creds)
            finally:
                os._exit(1)
        time.sleep(random.uniform(0.002, 0.03))
        os.kill(pid, signal.SIGKILL)
        killed_at = time.time()
        _, status = os.waitpid(pid, 0)
        assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, "the child died on its own"

        # 1. one whole login, old or new, private
        doc = json.loads(creds.read_text())
        oauth = doc["claudeAiOauth"]
        k = int(oauth["accessToken"].rsplit("-", 1)[1])
        assert oauth["refreshToken"] == f"sk-ant-ort01-{k}" and k >= last  # a pair from one write
        assert all(doc[key] == value for key, value in UNKNOWN_FIELDS.items())
        assert creds.stat().st_mode & 0o777 == 0o600
        last = k

        # 2. a lock left behind was last touched before the kill: it goes stale for Claude Code
        #    within its stale time, and the owner record names a dead process
        for path in lock_paths:
            if path.exists():
                left_locks += 1
                assert path.stat().st_mtime <= killed_at + 0.01
        owner = creds.parent / OWNER_RECORD
        if owner.exists():
            try:
                assert json.loads(owner.read_text())["pid"] == pid
            except ValueError:
                pytest.fail("a torn owner record")
        # 3. the next broker, STALE_2_1_197 s later, takes what was left and cleans up after itself
        later = HostLocks(creds.parent, now=lambda: killed_at + STALE_2_1_197 + 61.0)
        with later.refreshing(wait=2), later.writing(wait=2):
            pass
        assert not any(p.exists() for p in lock_paths) and not owner.exists()
    temps = len([p for p in creds.parent.iterdir() if p.name.endswith(".tmp")])
    assert last > 0, "no write-back ever completed"
    assert temps <= 2  # a killed write's temp files (they hold tokens) are swept by the next write
    print(f"\n{KILLS} kills: {last} write-backs completed, {left_locks} locks left behind (all stale in time), "
          f"{temps} temp files left")
