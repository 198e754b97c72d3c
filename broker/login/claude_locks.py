"""Claude Code's own locks around its login, taken the way Claude Code takes them.

In its config dir `D` (`$CLAUDE_CONFIG_DIR` or `~/.claude`, also when the login lives in the
macOS Keychain) Claude Code refreshes under two locks, `D/.oauth_refresh.lock` and the legacy
`<realpath(D)>.lock`, and writes the store under `D/.storage-write.lock`. While the broker
holds the refresh locks, the host's Claude Code waits, then re-reads the store and adopts the
pair the broker wrote instead of spending the same single-use refresh token. Since 2.1.332 the
holder also leaves an owner record, `D/.oauth_refresh.lock.owner`, which lets Claude Code tell
a dead holder from a live one; we write the same record.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Iterator, Mapping

from broker.common.atomic_files import remove_leftover_temps, write_private
from broker.login.lockdir import DirLock, Heartbeat, LockBusy
from broker.login.birth_time import birthtime_ms
from broker.common.errors import RefreshError

log = logging.getLogger(__name__)

REFRESH_LOCK = ".oauth_refresh.lock"
OWNER_RECORD = ".oauth_refresh.lock.owner"
STORAGE_LOCK = ".storage-write.lock"
STALE_SECONDS = 60.0  # the longest stale time of any Claude Code release (2.1.332)
HEARTBEAT_SECONDS = 2.0  # well inside the shortest (10 s, 2.1.197)


def claude_config_dir(env: Mapping[str, str] = os.environ) -> Path:
    """`$CLAUDE_CONFIG_DIR`, else `~/.claude`: the login file's home and the locks' too."""
    base = env.get("CLAUDE_CONFIG_DIR")
    return Path(base).expanduser() if base else Path(env.get("HOME") or Path.home()) / ".claude"


class HostLocks:
    """The locks of one Claude Code config dir."""

    def __init__(self, config_dir: Path, *, now: Callable[[], float] = time.time,
                 jitter: Callable[[], float] = random.random, stale: float = STALE_SECONDS,
                 heartbeat: float = HEARTBEAT_SECONDS) -> None:
        self.dir = Path(config_dir)
        self.now, self.jitter, self.stale, self.heartbeat = now, jitter, stale, heartbeat

    def refresh_locks(self) -> tuple[DirLock, DirLock]:
        legacy = Path(os.path.realpath(self.dir)).as_posix() + ".lock"
        return (DirLock(self.dir / REFRESH_LOCK, self.stale, now=self.now),
                DirLock(Path(legacy), self.stale, now=self.now))

    def storage_lock(self) -> DirLock:
        return DirLock(self.dir / STORAGE_LOCK, self.stale, now=self.now)

    @contextlib.contextmanager
    def refreshing(self, wait: float = 90.0, cancel: threading.Event | None = None) -> Iterator[None]:
        """Hold both refresh locks (and the owner record) for the duration of a refresh."""
        main, legacy = self.refresh_locks()
        self._ensure_dir()

        def attempt() -> list[DirLock]:
            main.try_acquire()
            try:
                legacy.try_acquire()
            except LockBusy:
                main.release()  # as Claude Code does: never sit on one lock waiting for the other
                raise
            except OSError as exc:  # e.g. the parent of D is read-only: Claude Code goes on too
                log.warning("cannot take the legacy lock %s (%s); going on with %s", legacy.path, exc, main.path)
                return [main]
            return [main, legacy]

        held = self._acquire(attempt, wait, cancel, "Claude Code is refreshing the login")
        beat = Heartbeat(held, self.heartbeat).start()
        birth = self._write_owner(main, legacy if legacy.held else None)
        try:
            yield
        finally:
            beat.stop()
            if birth is not None:
                self._remove_owner(birth)
            for lock in reversed(held):
                lock.release()

    @contextlib.contextmanager
    def writing(self, wait: float = 30.0, cancel: threading.Event | None = None) -> Iterator[None]:
        """Hold the store's write lock for one read-modify-write."""
        lock = self.storage_lock()
        self._ensure_dir()

        def attempt() -> list[DirLock]:
            lock.try_acquire()
            return [lock]

        held = self._acquire(attempt, wait, cancel, "Claude Code is writing the login")
        beat = Heartbeat(held, self.heartbeat).start()
        try:
            yield
        finally:
            beat.stop()
            lock.release()

    def stale_locks(self) -> list[tuple[Path, float]]:
        """Locks left behind (untouched for longer than the stale time), with their age."""
        out = []
        for lock in (*self.refresh_locks(), self.storage_lock()):
            age = lock.age()
            if age is not None and age > self.stale:
                out.append((lock.path, age))
        return out

    # -- helpers
    def _ensure_dir(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)

    def _acquire(self, attempt: Callable[[], list[DirLock]], wait: float, cancel: threading.Event | None,
                 busy: str) -> list[DirLock]:
        deadline = time.monotonic() + wait
        while True:
            try:
                held = attempt()
            except LockBusy:
                pass
            except OSError as exc:
                raise RefreshError(f"cannot take Claude Code's lock in {self.dir} ({exc.strerror})",
                                   kind=RefreshError.TRANSIENT) from None
            else:
                if cancel is not None and cancel.is_set():
                    for lock in reversed(held):
                        lock.release()
                    raise RefreshError("cancelled while taking Claude Code's lock", kind=RefreshError.TRANSIENT)
                return held
            left = deadline - time.monotonic()
            if left <= 0 or (cancel is not None and cancel.is_set()):
                raise RefreshError(f"{busy} (its lock in {self.dir} is held)", kind=RefreshError.TRANSIENT)
            delay = min(left, 0.2 + 0.5 * self.jitter())  # jitter: two waiters do not retry in step
            if cancel is not None:
                cancel.wait(delay)
            else:
                time.sleep(delay)

    def _write_owner(self, main: DirLock, legacy: DirLock | None) -> float | None:
        """Claude Code 2.1.332's owner record; returns the lock's birth time it names."""
        birth = birthtime_ms(main.path)
        if birth is None:
            return None  # Claude Code writes no record either when it cannot know the birth time
        record = {"pid": os.getpid(), **_process_identity(), "lockBirthtimeMs": birth}
        legacy_birth = birthtime_ms(legacy.path) if legacy is not None else None
        if legacy_birth:
            record["legacyLockBirthtimeMs"] = legacy_birth
        try:
            remove_leftover_temps(self.dir / OWNER_RECORD)  # we hold the refresh lock
            write_private(self.dir / OWNER_RECORD, json.dumps(record).encode())
        except OSError as exc:
            log.warning("cannot write the refresh lock's owner record: %s", exc)
            return None
        return birth

    def _remove_owner(self, birth: float) -> None:
        path = self.dir / OWNER_RECORD
        try:
            record = json.loads(path.read_text())
            if record.get("pid") == os.getpid() and record.get("lockBirthtimeMs") == birth:
                path.unlink()
        except (OSError, ValueError, AttributeError):
            pass


def _process_identity() -> dict[str, str]:
    """procStart, pidDomain and pidSpace as Claude Code computes them (Linux; plain elsewhere)."""
    try:
        ns = os.readlink("/proc/self/ns/pid")
    except OSError:
        ns = ""
    out: dict[str, str] = {}
    try:
        with open("/proc/self/stat", encoding="ascii") as fh:
            stat = fh.read()
        out["procStart"] = stat[stat.rindex(")") + 2:].split(" ")[19]  # field 22: start time in ticks
    except (OSError, ValueError, IndexError):
        pass
    if os.path.exists("/proc/self"):
        try:
            machine = Path("/etc/machine-id").read_text().strip()
        except OSError:
            machine = ""
        out["pidDomain"] = f"linux:{machine}:{ns}"
    else:
        out["pidDomain"] = "linux"  # what Claude Code writes on macOS
    out["pidSpace"] = socket.gethostname() + (f"#{ns}" if ns else "")
    return out
