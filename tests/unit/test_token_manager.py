"""The token manager with a fake clock, an in-memory store and an in-memory endpoint."""

from __future__ import annotations

import asyncio
import errno
import json

import pytest

from broker.status import snapshot as s
from broker.config.settings import RefreshSettings
from broker.common.errors import CredentialsError, NotLoggedIn, RefreshError, SourceUnavailable
from broker.common import fault_points
from broker.login import pending as pd
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


# -- the write-ahead record and the error paths between the answer and the store
WRITE_FAILURES = {
    "refused Keychain": SourceUnavailable("security -i failed (exit 51)"),
    "keyring error": SourceUnavailable("cannot write to the keyring: locked"),
    "disk full": OSError(errno.ENOSPC, "No space left on device"),
    "no permission": PermissionError(errno.EACCES, "Permission denied"),
    "not permitted": PermissionError(errno.EPERM, "Operation not permitted"),
    "a directory at the path": IsADirectoryError(errno.EISDIR, "Is a directory"),
    "a link at the path": OSError("/x/.credentials.json is not a regular file; not writing over it"),
    "nested too deeply": RecursionError("maximum recursion depth exceeded"),
    "unparseable": CredentialsError("not valid JSON"),
    "lock not had": RefreshError("Claude Code is refreshing (its lock is held)", kind=RefreshError.TRANSIENT),
    "anything else": ValueError("surprise"),
}


@pytest.fixture
def pending_path(tmp_path):
    return tmp_path / "state" / "pending-login.json"


@pytest.fixture
async def make(store, endpoint, clock, pending_path):
    made: list[TokenManager] = []

    async def make() -> TokenManager:
        m = TokenManager([store], endpoint, RefreshSettings(backoff_initial_seconds=4.0), clock=clock,
                         pending_path=pending_path, jitter=lambda: 0.0)
        await m.start(watch=False)
        made.append(m)
        return m

    yield make
    for m in made:
        await m.stop()


async def test_the_pair_is_saved_ahead_before_the_store_is_written_and_cleared_after(make, store, pending_path):
    seen: list[dict] = []
    store.on_write = lambda text: seen.append(json.loads(pending_path.read_text()))
    m = await make()
    await m.refresh("manual")
    assert len(seen) == 1
    saved = seen[0]
    assert saved["format"] == "inference-broker/pending-login" and saved["version"] == 1
    assert saved["login"]["refreshToken"] == "r-new-1"
    assert saved["replaced_sha256"] == [pd.digest("r0")] and "r0" not in json.dumps(saved)  # a digest, never the token
    assert not pending_path.exists()  # cleared once the store holds it
    assert store.doc()["claudeAiOauth"]["refreshToken"] == "r-new-1"


@pytest.mark.parametrize("where", ["write", "read"])
@pytest.mark.parametrize("failure", WRITE_FAILURES, ids=list(WRITE_FAILURES))
async def test_no_error_between_the_answer_and_the_store_drops_the_pair(make, store, endpoint, clock, pending_path,
                                                                        failure, where):
    store.error = WRITE_FAILURES[failure]
    store.fail_writes, store.fail_reads = (2, 0) if where == "write" else (0, 2)
    m = await make()
    await m.refresh("manual")
    assert await m.token() == "a-new-1"  # served on: it is the only valid pair
    st = m.status()
    assert st.writeback_problem and st.writeback_problem.startswith("the login could not be written back to memory: ")
    assert st.writeback_problem.endswith("; the broker holds the current login")
    assert json.loads(pending_path.read_text())["login"]["refreshToken"] == "r-new-1"
    await m.refresh("manual")  # a second refresh meanwhile spends the new pair's token, never r0
    assert endpoint.reused == 0
    await clock.advance(2.0)  # the first retry fails too
    await clock.advance(4.0)  # the second succeeds
    await eventually_async(lambda: not m.state.unsaved, what="the write-back retried")
    assert store.doc()["claudeAiOauth"]["refreshToken"] == m.login.refresh_token
    assert m.login.refresh_token in endpoint.live and endpoint.reused == 0
    assert m.status().writeback_problem is None and not pending_path.exists()


async def test_a_store_read_while_a_pair_is_pending_is_not_believed(make, store, endpoint, clock):
    store.fail_writes = 1
    m = await make()
    await m.refresh("manual")
    await m.reload("watch")  # the store still holds r0: spent
    assert m.login.access_token == "a-new-1"
    await m.refresh("manual")
    assert endpoint.reused == 0 and endpoint.calls == 2


async def test_a_restart_adopts_the_saved_pair_and_writes_it_back(make, store, endpoint, clock, pending_path):
    store.fail_writes = 1
    first = await make()
    await first.refresh("manual")
    await first.stop()  # stopped (or killed) before the retry: the store still holds r0
    assert store.doc()["claudeAiOauth"]["refreshToken"] == "r0" and pending_path.exists()
    second = await make()
    await eventually_async(lambda: store.doc()["claudeAiOauth"]["refreshToken"] == "r-new-1",
                           what="the saved pair written back")
    assert await second.token() == "a-new-1" and not pending_path.exists()
    await second.refresh("manual")
    assert endpoint.reused == 0 and endpoint.calls == 2


async def test_a_restart_with_the_store_unreadable_serves_the_saved_pair(make, store, endpoint, clock, pending_path):
    store.fail_writes = 1
    first = await make()
    await first.refresh("manual")
    await first.stop()
    good = store.text
    store.text = "[" * 100_000  # nested past the stack
    second = await make()
    assert await second.token() == "a-new-1" and second.status().state == s.VALID
    store.text = good
    await clock.advance(8.0)
    await eventually_async(lambda: not second.state.unsaved, what="the write-back once the store reads")
    assert store.doc()["claudeAiOauth"]["refreshToken"] == "r-new-1" and endpoint.reused == 0


async def test_a_saved_pair_is_dropped_for_a_newer_login_in_the_store(make, store, clock, pending_path):
    store.fail_writes = 1
    first = await make()
    await first.refresh("manual")
    await first.stop()
    store.put("a-login", "r-login", clock.time() + 8 * 3600)  # `claude /login` meanwhile
    second = await make()
    assert await second.token() == "a-login"
    await eventually_async(lambda: not pending_path.exists(), what="the stale record removed")


async def test_short_lived_tokens_do_not_make_every_request_a_refresh(store, clock):
    """Issue 19: 300-second tokens against a 600-second proxy margin made 60 requests 60 token calls."""
    endpoint = MemoryRefresher({"r0"}, expires_in=300)
    store.put("a0", "r0", clock.time() + 200)
    m = TokenManager([store], endpoint, RefreshSettings(proxy_margin_seconds=600), clock=clock, jitter=lambda: 0.0)
    await m.start(watch=False)
    try:
        for _ in range(60):
            assert await m.token(min_valid=600) == "a-new-1"
            await clock.advance(0.05)
        assert endpoint.calls == 1  # the first request, on a token with 200 s left
        await clock.advance(100)  # 150 s after minting: half its lifetime left
        assert endpoint.calls == 1 and await m.token(min_valid=600) == "a-new-1"
        await clock.advance(50)
        await eventually_async(lambda: endpoint.calls == 2, what="the scheduled refresh at half the lifetime")
        for _ in range(20):  # a token minted seconds ago is never refreshed again
            await m.token(min_valid=600)
            await clock.advance(1)
        assert endpoint.calls == 2 and endpoint.reused == 0
    finally:
        await m.stop()


async def test_a_pair_that_failed_before_its_record_was_saved_is_saved_and_survives_a_stop(
        make, store, endpoint, clock, pending_path):
    """An exception right after the answer (before the write-ahead save) keeps the pair, saves
    it, and a broker stopped before the retry finds it again."""
    def fail_at_the_answer(step: str) -> None:
        if step == fault_points.ANSWER_RECEIVED:
            raise RuntimeError("injected")

    fault_points.arm(fail_at_the_answer)
    try:
        first = await make()
        await first.refresh("manual")
    finally:
        fault_points.arm(None)
    assert await first.token() == "a-new-1" and pending_path.exists()
    await first.stop()
    second = await make()
    await eventually_async(lambda: store.doc()["claudeAiOauth"]["refreshToken"] == "r-new-1",
                           what="the saved pair written back")
    assert await second.token() == "a-new-1" and endpoint.reused == 0


@pytest.mark.parametrize("step", fault_points.STEPS)
async def test_an_exception_at_any_step_of_a_refresh_keeps_the_login_and_spends_nothing_twice(
        make, store, endpoint, clock, pending_path, step):
    """The fault matrix in one process: the broker-process version with SIGKILLs is
    tests/integration/test_refresh_faults.py."""
    fired: list[str] = []

    def fail_once(reached: str) -> None:
        if reached == step and not fired:
            fired.append(reached)
            raise RuntimeError(f"injected at {reached}")

    fault_points.arm(fail_once)
    try:
        m = await make()
        await m.refresh("manual")
        assert fired == [step]
        assert m.status().state in (s.VALID, s.EXPIRING)  # a failed refresh keeps the valid token
        await clock.advance(10)  # the retry: of the refresh, or of the write-back
    finally:
        fault_points.arm(None)
    await eventually_async(lambda: not m.refreshing and not m.state.unsaved and m.login is not None
                           and store.doc()["claudeAiOauth"]["refreshToken"] == m.login.refresh_token,
                           what="the broker and the store agreeing again")
    assert m.login.refresh_token in endpoint.live and endpoint.reused == 0
    assert m.status().state == s.VALID and not pending_path.exists()
    await m.refresh("manual")  # and the stored refresh token works
    assert endpoint.reused == 0 and store.doc()["claudeAiOauth"]["refreshToken"] == m.login.refresh_token
