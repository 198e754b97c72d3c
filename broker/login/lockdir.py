"""A directory lock with proper-lockfile's semantics, the kind Claude Code takes.

Claude Code (through the npm `proper-lockfile` package) locks by `mkdir`: the directory exists
while someone holds the lock. A holder keeps it fresh by touching its mtime every few seconds;
a lock whose mtime is older than the stale time is abandoned and may be removed. To share its
login we follow the same rules, and are stricter where it matters to another process:

- we touch our locks every `heartbeat` seconds (Claude Code 2.1.197 calls a lock stale after
  10 s, 2.1.332 after 60 s), so a live broker never looks dead to either;
- another holder's lock counts as stale only after `stale` seconds without a touch (the longer
  of their times), and we remove it only if it is still the very directory we judged stale;
- we never remove a lock that is not stale and not ours, and we release ours only while its
  mtime is still the one we wrote (otherwise someone took it over: it is theirs now).
"""

from __future__ import annotations

import errno
import logging
import os
import threading
import time
from pathlib import Path
from typing import Callable

log = logging.getLogger(__name__)


class LockBusy(Exception):
    """Someone else holds the lock (proper-lockfile's ELOCKED)."""


class DirLock:
    def __init__(self, path: Path, stale: float, *, now: Callable[[], float] = time.time) -> None:
        self.path, self.stale, self.now = Path(path), stale, now
        self._mtime_ns: int | None = None  # the mtime we last wrote; None while not held
        self.compromised = False

    @property
    def held(self) -> bool:
        return self._mtime_ns is not None

    def try_acquire(self) -> None:
        """One attempt: take the lock, or raise LockBusy (or OSError for anything else)."""
        for _ in range(3):  # a stale lock removed, or one vanishing under us, earns another try
            try:
                os.mkdir(self.path, 0o700)
            except FileExistsError:
                if not self._remove_if_stale():
                    raise LockBusy(str(self.path)) from None
                continue
            self.compromised = False
            self._mtime_ns = None
            self._stamp()
            return
        raise LockBusy(str(self.path))

    def age(self) -> float | None:
        """Seconds since the lock was last touched, or None when nobody holds it."""
        try:
            return self.now() - self.path.stat().st_mtime
        except FileNotFoundError:
            return None

    def is_stale(self) -> bool:
        age = self.age()
        return age is not None and age > self.stale

    def _remove_if_stale(self) -> bool:
        try:
            before = os.stat(self.path)
        except FileNotFoundError:
            return True  # released meanwhile: try again
        if self.now() - before.st_mtime <= self.stale:
            return False
        # Judge and remove the same directory: a holder that replaced it meanwhile keeps it.
        try:
            again = os.stat(self.path)
        except FileNotFoundError:
            return True
        if (again.st_ino, again.st_mtime_ns) != (before.st_ino, before.st_mtime_ns):
            return False
        try:
            os.rmdir(self.path)
        except FileNotFoundError:
            pass
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # not an empty lock dir: leave it
                return False
            raise
        log.warning("removed a stale lock %s (untouched for %.0f s)", self.path, self.now() - before.st_mtime)
        return True

    def _stamp(self) -> None:
        when = self.now()
        os.utime(self.path, (when, when))
        self._mtime_ns = os.stat(self.path).st_mtime_ns

    def touch(self) -> bool:
        """One heartbeat. False (and the lock is no longer ours) if someone took it over."""
        if self._mtime_ns is None:
            return False
        try:
            current = os.stat(self.path).st_mtime_ns
        except FileNotFoundError:
            current = None
        if current != self._mtime_ns:
            self.compromised = True
            self._mtime_ns = None
            log.error("lock %s was taken over by another process", self.path)
            return False
        self._stamp()
        return True

    def release(self) -> None:
        """Remove the lock if it is still ours; a taken-over lock belongs to its new holder."""
        if self._mtime_ns is None:
            return
        try:
            still_ours = os.stat(self.path).st_mtime_ns == self._mtime_ns
        except FileNotFoundError:
            still_ours = False
        self._mtime_ns = None
        if still_ours:
            try:
                os.rmdir(self.path)
            except FileNotFoundError:
                pass


class Heartbeat:
    """Touch held locks every `interval` seconds from a daemon thread until stopped."""

    def __init__(self, locks: list[DirLock], interval: float) -> None:
        self.locks, self.interval = locks, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lock-heartbeat", daemon=True)

    def start(self) -> "Heartbeat":
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            for lock in self.locks:
                try:
                    lock.touch()
                except OSError as exc:  # keep trying: a missed beat is not a lost lock yet
                    log.warning("cannot refresh lock %s: %s", lock.path, exc)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)
