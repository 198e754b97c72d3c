"""The token manager with a fake clock, an in-memory store and an in-memory endpoint."""

from __future__ import annotations

import asyncio
import json

import pytest

from broker.status import snapshot as s
from broker.config.settings import RefreshSettings
from broker.common.errors import NotLoggedIn, RefreshError
from broker.login.token_manager import TokenManager
from tests.fakes.clock import FakeClock
from tests.fakes.eventually import eventually_async
from tests.fakes.memory import MemoryRefresher, MemoryStore


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store(clock) -> MemoryStore:
    st = MemoryStore()
    st.put("a0", "r0", clock.time() + 1000)
    return st


@pytest.fixture
def endpoint() -> MemoryRefresher:
    return MemoryRefresher({"r0"})


@pytest.fixture
async def manager(store, endpoint, clock):
    events: list[dict] = []
    m = TokenManager([store], endpoint, RefreshSettings(backoff_initial_seconds=4.0), clock=clock,
                     record=events.append, jitter=lambda: 0.0)
    m.recorded = events
    await m.start(watch=False)
    yield m
    await m.stop()


async def test_a_request_near_expiry_refreshes_once_and_writes_back(manager, store, endpoint):
    tokens = await asyncio.gather(*(manager.token(min_valid=3600) for _ in range(10)))
    assert set(tokens) == {"a-new-1"} and endpoint.calls == 1
    assert store.doc()["claudeAiOauth"]["refreshToken"] == "r-new-1"
    assert endpoint.scopes_seen == [("user:inference", "user:profile")]  # the login's own scopes
    assert [e["outcome"] for e in manager.recorded] == ["adopted", "refreshed"]


async def test_a_pair_rotated_elsewhere_is_adopted_without_spending(manager, store, endpoint, clock):
    store.put("a-host", "r-host", clock.time() + 8 * 3600)  # the host refreshed; we missed the event
    await manager.refresh("manual")
    assert endpoint.calls == 0 and await manager.token() == "a-host"


async def test_a_newer_login_written_during_our_refresh_is_kept(manager, store, endpoint, clock):
    endpoint.during = lambda: store.put("a-login", "r-login", clock.time() + 8 * 3600)  # `claude /login`
    await manager.refresh("manual")
    assert store.doc()["claudeAiOauth"]["accessToken"] == "a-login"
    assert await manager.token() == "a-login"


async def test_a_cleared_store_is_restored_with_the_new_pair(manager, store, endpoint):
    def host_clears() -> None:
        doc = store.doc()
        doc["claudeAiOauth"].update(accessToken="", refreshToken="", expiresAt=0)
        store.text = json.dumps(doc)

    endpoint.during = host_clears
    await manager.refresh("manual")
    assert store.doc()["claudeAiOauth"]["refreshToken"] == "r-new-1"
    assert store.doc()["mcpOAuth"]  # the rest of the document survives
    assert manager.status().state == s.VALID


async def test_a_failed_write_keeps_the_pair_and_retries(manager, store, endpoint, clock):
    store.fail_writes = 1
    await manager.refresh("manual")
    assert store.doc()["claudeAiOauth"]["refreshToken"] == "r0"  # not written yet
    assert await manager.token() == "a-new-1"  # but served: it is the only valid pair
    assert "could not be written back" in manager.status().reason
    await clock.advance(4.0)
    # The event is recorded just after the write: wait for both.
    await eventually_async(lambda: store.writes and "written back" in [e["outcome"] for e in manager.recorded],
                           what="the retried write and its event")
    assert store.doc()["claudeAiOauth"]["refreshToken"] == "r-new-1" and endpoint.calls == 1


async def test_invalid_grant_signs_out_without_touching_the_store(manager, store, endpoint):
    before = store.text
    endpoint.live.clear()
    await manager.refresh("manual")
    assert manager.status().state == s.SIGNED_OUT and store.text == before
    with pytest.raises(NotLoggedIn):
        await manager.token()


async def test_a_401_refreshes_only_the_token_in_use(manager, endpoint):
    await manager.refresh("upstream 401", failed_token="someone-else")
    assert endpoint.calls == 0
    await manager.refresh("upstream 401", failed_token="a0")
    await manager.refresh("upstream 401", failed_token="a-new-1")  # moments later: not again
    assert endpoint.calls == 1


async def test_transient_failures_back_off_on_the_fake_clock(manager, endpoint, clock):
    endpoint.failures = [RefreshError("503", kind=RefreshError.TRANSIENT)] * 2
    await manager.refresh("manual")
    assert manager.status().next_retry_at == pytest.approx(clock.time() + 2.0)
    assert await manager.token(min_valid=3600) == "a0"  # backing off: served, no new call
    assert endpoint.calls == 1
