"""Sandbox access over a real key store: which requests in flight a change ends.

Another process is another SQLite connection to the same file, as the CLI is.
"""

from __future__ import annotations

import asyncio

import pytest

from broker.sandboxes.access import SandboxAccess
from broker.sandboxes.key_store import KeyStore


async def held(access: SandboxAccess, name: str, started: asyncio.Event) -> None:
    with access.streaming(name):
        started.set()
        await asyncio.Event().wait()  # until cancelled


async def open_stream(access: SandboxAccess, name: str) -> asyncio.Task[None]:
    started = asyncio.Event()
    task = asyncio.create_task(held(access, name, started))
    await started.wait()
    return task


async def settle(*tasks: asyncio.Task[None]) -> list[bool]:
    await asyncio.sleep(0)
    return [t.cancelled() or t.cancelling() > 0 for t in tasks]


@pytest.fixture
async def access(tmp_path):
    a = SandboxAccess(KeyStore(tmp_path / "broker.db"))
    await a.load()
    yield a
    await a.close()


async def test_a_rotation_by_another_process_ends_only_that_sandboxs_streams(access, tmp_path):
    old = await access.add("a")
    await access.add("b")
    a, b = await open_stream(access, "a"), await open_stream(access, "b")
    with KeyStore(tmp_path / "broker.db") as cli:
        new = cli.rotate("a")
    assert access.sandbox_for(old) == "a"  # memory only, until the next sync
    await access.sync()
    assert await settle(a, b) == [True, False]
    assert access.sandbox_for(old) is None and access.sandbox_for(new) == "a"
    assert access.active_streams == 1
    b.cancel()


async def test_in_process_changes_end_streams_at_once(access):
    await access.add("a")
    await access.add("b")
    a, b = await open_stream(access, "a"), await open_stream(access, "b")
    await access.add("c")
    assert await settle(a, b) == [False, False]
    await access.rotate("b")
    assert await settle(a, b) == [False, True]
    await access.set_paused(True)
    assert await settle(a) == [True] and access.paused
    await access.set_paused(False)
    c = await open_stream(access, "c")
    assert await access.revoke("c") and await settle(c) == [True]
    assert [s.name for s in access.sandboxes()] == ["a", "b"]


async def test_counted_use_shows_before_and_after_it_is_saved(access, tmp_path):
    await access.add("a")
    access.record_use("a", 100.0, None)
    access.record_use("a", 200.0, None)
    assert [(s.name, s.requests, s.last_used) for s in access.sandboxes()] == [("a", 2, 200.0)]
    await access.flush()
    assert [(s.name, s.requests) for s in access.sandboxes()] == [("a", 2)]
    with KeyStore(tmp_path / "broker.db") as cli:
        assert [(s.name, s.requests) for s in cli.list()] == [("a", 2)]


async def test_only_the_key_just_issued_takes_itself_back(access: SandboxAccess) -> None:
    old = await access.add("a")
    new = await access.rotate("a")
    assert not await access.undo_issue("a", old)  # not the key issued last
    assert access.sandbox_for(new) == "a" and access.sandbox_for(old) is None
    assert await access.undo_issue("a", new)
    assert access.sandbox_for(old) == "a" and access.sandbox_for(new) is None
    assert not await access.undo_issue("a", new)  # once


async def test_a_key_rotated_again_since_is_not_taken_back(access: SandboxAccess) -> None:
    await access.add("a")
    first = await access.rotate("a")
    second = await access.rotate("a")
    assert not await access.undo_issue("a", first)
    assert access.sandbox_for(second) == "a"
