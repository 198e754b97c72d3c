"""Claude Code's lock protocol on real directories: stale detection, heartbeat, contention,
the owner record, and never removing a lock that is alive or not ours. Time is injected."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import pytest

from broker.login.claude_locks import OWNER_RECORD, HostLocks
from broker.login.lockdir import DirLock, Heartbeat, LockBusy
from broker.login.birth_time import birthtime_ms
from broker.common.errors import RefreshError
from tests.fakes.eventually import eventually
from tests.support import require_tools

pytestmark = pytest.mark.integration

T0 = 1_800_000_000.0


class Now:
    """An injected wall clock for mtimes: stale checks read it, our stamps write it."""

    def __init__(self, t: float = T0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def left_by_another(path: Path, mtime: float) -> None:
    path.mkdir()
    os.utime(path, (mtime, mtime))


def test_a_held_lock_is_busy_until_released(tmp_path):
    now = Now()
    a, b = DirLock(tmp_path / "x.lock", 60, now=now), DirLock(tmp_path / "x.lock", 60, now=now)
    a.try_acquire()
    with pytest.raises(LockBusy):
        b.try_acquire()
    a.release()
    assert not (tmp_path / "x.lock").exists()
    b.try_acquire()
    assert b.held and (tmp_path / "x.lock").is_dir()


def test_another_holders_lock_is_stale_only_after_the_longer_time(tmp_path):
    now = Now()
    path = tmp_path / "x.lock"
    left_by_another(path, T0 - 59)  # older than Claude Code 2.1.197's 10 s, younger than 60 s
    lock = DirLock(path, 60, now=now)
    with pytest.raises(LockBusy):
        lock.try_acquire()
    assert path.is_dir()
    now.t = T0 + 2  # 61 s without a heartbeat: abandoned
    lock.try_acquire()
    assert lock.held and path.stat().st_mtime == pytest.approx(now.t, abs=0.01)


def test_a_lock_touched_in_the_future_or_holding_files_is_never_removed(tmp_path):
    now = Now()
    future = tmp_path / "future.lock"
    left_by_another(future, T0 + 30)
    with pytest.raises(LockBusy):
        DirLock(future, 60, now=now).try_acquire()
    odd = tmp_path / "odd.lock"
    left_by_another(odd, T0 - 3600)
    (odd / "keep").write_text("not a lock")
    os.utime(odd, (T0 - 3600, T0 - 3600))
    with pytest.raises(LockBusy):
        DirLock(odd, 60, now=now).try_acquire()
    assert (odd / "keep").exists() and future.is_dir()


def test_the_heartbeat_keeps_our_lock_fresh(tmp_path):
    now = Now()
    lock = DirLock(tmp_path / "x.lock", 60, now=now)
    lock.try_acquire()
    beat = Heartbeat([lock], interval=0.02).start()
    try:
        for step in range(1, 4):
            now.t = T0 + 10 * step
            eventually(lambda: (tmp_path / "x.lock").stat().st_mtime == pytest.approx(now.t, abs=0.01),
                       timeout=5, what="a heartbeat touching the lock", interval=0.01)
    finally:
        beat.stop()
    other = DirLock(tmp_path / "x.lock", 60, now=Now(T0 + 30 + 59))
    with pytest.raises(LockBusy):  # 89 s after we took it, yet fresh: still ours
        other.try_acquire()
    lock.release()


def test_a_lock_taken_over_is_not_ours_to_remove(tmp_path):
    now = Now()
    path = tmp_path / "x.lock"
    ours = DirLock(path, 60, now=now)
    ours.try_acquire()
    # We stalled past the stale time and another process replaced the lock with its own.
    os.rmdir(path)
    left_by_another(path, T0 + 100)
    assert ours.touch() is False and ours.compromised
    ours.release()
    assert path.is_dir() and path.stat().st_mtime == pytest.approx(T0 + 100, abs=0.01)


def test_refresh_locks_owner_record_and_release(tmp_path):
    d = tmp_path / "claude"
    locks = HostLocks(d, now=Now(), heartbeat=0.05)
    with locks.refreshing(wait=1):
        assert (d / ".oauth_refresh.lock").is_dir()
        assert Path(str(d.resolve()) + ".lock").is_dir()  # the legacy lock beside D
        record = json.loads((d / OWNER_RECORD).read_text())
        assert record["pid"] == os.getpid()
        assert record["lockBirthtimeMs"] == birthtime_ms(d / ".oauth_refresh.lock")
        assert record["legacyLockBirthtimeMs"] == birthtime_ms(Path(str(d.resolve()) + ".lock"))
        if Path("/proc/self/stat").exists():
            assert record["pidDomain"].startswith("linux:") and record["pidDomain"].endswith(os.readlink("/proc/self/ns/pid"))
            assert record["pidSpace"].endswith("#" + os.readlink("/proc/self/ns/pid"))
            assert record["procStart"].isdigit()
        assert (d / OWNER_RECORD).stat().st_mode & 0o777 == 0o600
    assert not (d / ".oauth_refresh.lock").exists() and not Path(str(d.resolve()) + ".lock").exists()
    assert not (d / OWNER_RECORD).exists()


def test_birth_time_matches_what_node_reports(tmp_path):
    require_tools("node")
    probe = tmp_path / "probe.lock"
    probe.mkdir()
    node = subprocess.run(["node", "-e", "console.log(JSON.stringify(require('fs').statSync(process.argv[1]).birthtimeMs))",
                           str(probe)], capture_output=True, text=True, timeout=30, check=True)
    assert json.loads(node.stdout) == birthtime_ms(probe)


def test_a_busy_legacy_lock_gives_back_the_first_and_waits(tmp_path):
    d = tmp_path / "claude"
    d.mkdir()
    legacy = Path(str(d.resolve()) + ".lock")
    legacy.mkdir()  # Claude Code holds the legacy lock (fresh mtime)
    locks = HostLocks(d, heartbeat=0.05)
    got = threading.Event()

    def take() -> None:
        with locks.refreshing(wait=10):
            got.set()

    t = threading.Thread(target=take)
    t.start()
    time.sleep(0.3)
    assert not got.is_set()
    assert not (d / ".oauth_refresh.lock").exists()  # not sitting on the new lock meanwhile
    os.rmdir(legacy)  # Claude Code releases
    t.join(timeout=10)
    assert got.is_set()


def test_a_live_holder_makes_us_give_up_in_time(tmp_path):
    d = tmp_path / "claude"
    d.mkdir()
    (d / ".oauth_refresh.lock").mkdir()
    with pytest.raises(RefreshError) as err:
        with HostLocks(d).refreshing(wait=0.5):
            pass
    assert "Claude Code is refreshing" in err.value.message
    assert (d / ".oauth_refresh.lock").is_dir()  # left alone


def test_stale_locks_are_reported(tmp_path):
    d = tmp_path / "claude"
    d.mkdir()
    left_by_another(d / ".storage-write.lock", T0 - 120)
    left_by_another(d / ".oauth_refresh.lock", T0 - 5)
    found = HostLocks(d, now=Now()).stale_locks()
    assert [(p.name, round(age)) for p, age in found] == [(".storage-write.lock", 120)]


def test_doctor_reports_a_stale_claude_code_lock(tmp_path):
    from broker.login.file_store import FileSource
    from broker.cli.doctor_checks import WARN, check_host_locks

    d = tmp_path / "claude"
    d.mkdir()
    assert check_host_locks([FileSource(d / ".credentials.json")]) == []
    left_by_another(d / ".oauth_refresh.lock", time.time() - 300)
    (finding,) = check_host_locks([FileSource(d / ".credentials.json")])
    assert finding.level == WARN and "stale Claude Code lock" in finding.what and "rmdir" in finding.fix


async def test_a_cancelled_wait_leaves_no_lock_behind(tmp_path):
    import asyncio

    from broker.login.broker_lock import held

    d = tmp_path / "claude"
    d.mkdir()
    theirs = d / ".oauth_refresh.lock"
    theirs.mkdir()  # Claude Code is refreshing
    locks = HostLocks(d, heartbeat=0.05)
    entered = []

    async def refresh() -> None:
        async with held(lambda cancel: locks.refreshing(wait=30, cancel=cancel)):
            entered.append(True)

    task = asyncio.create_task(refresh())
    await asyncio.sleep(0.3)
    task.cancel()  # the broker stops while waiting for Claude Code
    with pytest.raises(asyncio.CancelledError):
        await task
    os.rmdir(theirs)  # Claude Code finishes
    await asyncio.sleep(1.0)  # longer than one retry: a thread still waiting would take it now
    assert not entered and not theirs.exists()
    assert not Path(str(d.resolve()) + ".lock").exists() and not (d / OWNER_RECORD).exists()
