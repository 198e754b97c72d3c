"""Who may use the proxy right now: the one place that decides, and acts on, sandbox access.

It keeps the key hashes, the pause flag, the budgets and the sandbox list in memory (the proxy
checks a key, and `admit` a budget, against memory, with no SQLite on the request path),
registers every request in flight by sandbox, and counts use. Every change (add, rotate,
revoke, revoke all, pause, resume, a budget, or another process writing the key store) goes
through `_apply`, which compares the new state with the old by name *and* key hash and ends
exactly the streams whose access went away.

Timing: an action taken in this process (tray, CLI through the control socket) takes effect
before its call returns. A change another process wrote straight into the key store (the
CLI with no broker to talk to) is noticed by `sync()`, which the service runs every second.
All key-store I/O runs in one worker thread, in order, never on the event loop.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, TypeVar

from broker.sandboxes.key_store import Counts, KeyStore, tally, with_counts
from broker.usage.budget import Budget
from broker.common.api_errors import Refusal
from broker.sandboxes.keys import hash_key, match_key
from broker.sandboxes.info import SandboxInfo
from broker.usage.reply_usage import Usage

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class _Stored:
    """What the key store holds, as last read."""

    hashes: dict[str, str] = field(default_factory=dict)
    paused: bool = False
    rows: tuple[SandboxInfo, ...] = ()
    budgets: dict[str, Budget] = field(default_factory=dict)


class _NoMeter:
    def check(self, name: str, now: float, budget: Budget | None) -> tuple[Refusal, float] | None:
        return None

    def reserve(self, ex: Any, body: bytes | bytearray, budget: Budget | None) -> tuple[Refusal, float] | None:
        return None


class SandboxAccess:
    def __init__(self, keystore: KeyStore, on_change: Callable[[], None] = lambda: None, meter: Any = None) -> None:
        self.keystore = keystore
        self.on_change = on_change
        self.meter = meter or _NoMeter()  # budgets (broker.usage.accounting): spent tokens against them
        self._io = ThreadPoolExecutor(1, thread_name_prefix="keystore")
        self._state = _Stored()
        self._active: dict[str, set[asyncio.Task[Any]]] = {}
        self._unsaved: Counts = {}  # use counted since the last flush
        self._saving: Counts = {}  # use being written by a flush in progress
        # name -> (hash of the key last issued, the hash it replaced or None): read and written
        # only in the key store's thread
        self._issued: dict[str, tuple[str, str | None]] = {}

    # -- reading (the proxy's side: memory only)
    @property
    def paused(self) -> bool:
        return self._state.paused

    def sandbox_for(self, key: str) -> str | None:
        """The sandbox `key` belongs to (constant-time compare), or None."""
        return match_key(key, self._state.hashes)

    @property
    def budgets(self) -> dict[str, Budget]:
        return self._state.budgets

    def admit(self, name: str, now: float) -> tuple[Refusal, float] | None:
        """None to forward; else a 429 (over the sandbox's budget, or the plan-wide stop)."""
        return self.meter.check(name, now, self._state.budgets.get(name))

    def reserve(self, ex: Any, body: bytes | bytearray) -> tuple[Refusal, float] | None:
        """Once the body is read: None to forward, holding what the request may spend against
        its sandbox's budget until its use is accounted; else a 429 as `admit` gives."""
        return self.meter.reserve(ex, body, self._state.budgets.get(ex.sandbox))

    def sandboxes(self) -> list[SandboxInfo]:
        return with_counts(list(self._state.rows), self._saving, self._unsaved)

    @property
    def active_streams(self) -> int:
        return sum(len(tasks) for tasks in self._active.values())

    def streaming(self, name: str) -> "_Held":
        """Register the current task as a request of sandbox `name` until the block ends."""
        task = asyncio.current_task()
        assert task is not None
        return _Held(self._active, name, task)

    def record_use(self, name: str, when: float, usage: Usage | None) -> None:
        tally(self._unsaved, name, when, usage)

    # -- changing (each writes the store, then applies what it now holds)
    async def load(self) -> None:
        """Read the store once at start (its current version counts as seen)."""
        self._apply(await self._run(lambda: self._read(mark_seen=True)))

    async def add(self, name: str) -> str:
        return await self._change(lambda store: self._issue(store, name, rotate=False))

    async def rotate(self, name: str) -> str:
        return await self._change(lambda store: self._issue(store, name, rotate=True))

    async def undo_issue(self, name: str, key: str) -> bool:
        """Take back the key just issued to `name` (the client could not write it where the
        sandbox reads it): the previous key works again, or a new sandbox is gone. Only the
        holder of that key can ask, and only while it is still the current one."""
        def undo(store: KeyStore) -> bool:
            issued = self._issued.get(name)
            if issued is None or not hmac.compare_digest(issued[0], hash_key(key)):
                return False
            del self._issued[name]
            return store.undo_issue(name, *issued)

        return await self._change(undo)

    def _issue(self, store: KeyStore, name: str, rotate: bool) -> str:
        """In the store's thread: a new key, remembering what it replaced (for `undo_issue`)."""
        previous = store.hashes().get(name) if rotate else None
        key = store.rotate(name) if rotate else store.add(name)
        self._issued[name] = (hash_key(key), previous)
        return key

    async def revoke(self, name: str) -> bool:
        return await self._change(lambda store: store.revoke(name))

    async def revoke_all(self) -> int:
        return await self._change(lambda store: store.revoke_all())

    async def set_budget(self, name: str, budget: Budget | None) -> None:
        await self._change(lambda store: store.set_budget(name, budget))

    async def set_paused(self, paused: bool) -> None:
        await self._change(lambda store: store.set_paused(paused))

    async def sync(self) -> None:
        """Pick up what another process wrote to the key store since the last look (asking
        the key store's thread only when its file says a commit happened: an idle broker
        wakes one thread a second, not two)."""
        if not self.keystore.may_have_changed():
            return
        state = await self._run(lambda: self._read() if self.keystore.changed() else None)
        if state is not None:
            self._apply(state)

    async def flush(self) -> None:
        """Save counted use; the list shows it throughout (unsaved, saving, then stored)."""
        if not self._unsaved:
            return
        self._saving, self._unsaved = self._unsaved, {}

        def save() -> list[SandboxInfo]:
            self.keystore.write_usage(self._saving)
            return self.keystore.stored()

        try:
            rows = await self._run(save)
            self._state = _Stored(self._state.hashes, self._state.paused, tuple(rows), self._state.budgets)
        except Exception:
            for name, (req, inp, outp, last) in self._saving.items():  # keep them for the next try
                p = self._unsaved.setdefault(name, [0, 0, 0, 0.0])
                p[0], p[1], p[2], p[3] = p[0] + req, p[1] + inp, p[2] + outp, max(p[3], last)
            raise
        finally:
            self._saving = {}

    async def close(self) -> None:
        self.end_streams()
        try:
            await self.flush()
        finally:
            await self._run(self.keystore.close)
            self._io.shutdown(wait=False)

    def end_streams(self, name: str | None = None) -> int:
        names = [name] if name is not None else list(self._active)
        ended = 0
        for n in names:
            for task in list(self._active.get(n, ())):
                task.cancel()
                ended += 1
        if ended:
            log.info("ended %d request(s) in flight%s", ended, f" for sandbox {name}" if name else "")
        return ended

    # -- internals
    async def _change(self, write: Callable[[KeyStore], T]) -> T:
        """Write the store, then adopt what it now holds (ending the streams that lost access)."""
        result, state = await self._run(lambda: (write(self.keystore), self._read()))
        self._apply(state)
        return result

    def _read(self, mark_seen: bool = False) -> _Stored:
        if mark_seen:
            self.keystore.changed()
        return _Stored(self.keystore.hashes(), self.keystore.paused(), tuple(self.keystore.stored()),
                       self.keystore.budgets())

    def _apply(self, new: _Stored) -> None:
        """Adopt `new`; end the streams of every sandbox whose key is gone or changed, or all
        of them when access is now paused."""
        old, self._state = self._state, new
        if new.paused:
            self.end_streams()
        else:
            for name, digest in old.hashes.items():
                if new.hashes.get(name) != digest:
                    self.end_streams(name)
        for name in set(self._unsaved) - set(new.hashes):
            del self._unsaved[name]
        self.on_change()

    async def _run(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._io, fn)


class _Held:
    """One request in `SandboxAccess._active` while its block runs (a class, not a generator
    context manager: it is entered for every request)."""

    __slots__ = ("active", "name", "task")

    def __init__(self, active: dict[str, set[asyncio.Task[Any]]], name: str, task: asyncio.Task[Any]) -> None:
        self.active, self.name, self.task = active, name, task

    def __enter__(self) -> None:
        tasks = self.active.get(self.name)
        if tasks is None:
            tasks = self.active[self.name] = set()
        tasks.add(self.task)

    def __exit__(self, *exc: object) -> None:
        tasks = self.active.get(self.name)
        if tasks is not None:
            tasks.discard(self.task)
            if not tasks:
                del self.active[self.name]
