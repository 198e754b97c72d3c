"""The token manager against a real token endpoint (fake Anthropic), a real file, a real watcher."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest

from broker.login.file_store import FileSource
from broker.login.oauth import OAuthRefresher
from broker.status import snapshot as s
from broker.config.settings import RefreshSettings
from broker.common.errors import NotLoggedIn
from broker.login.token_manager import TokenManager
from tests.fakes.clock import FakeClock
from tests.fakes.eventually import eventually_async
from tests.fakes.login import UNKNOWN_FIELDS, write_login
from tests.fakes.token_endpoint import CLIENT_ID


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def creds(tmp_path: Path) -> Path:
    return tmp_path / "claude" / ".credentials.json"


@pytest.fixture
def events() -> list[dict]:
    return []


@pytest.fixture
async def make_manager(creds, token_url, clock, events, tmp_path):
    managers: list[TokenManager] = []

    async def make(watch: bool = False, **settings) -> TokenManager:
        cfg = RefreshSettings(**{"backoff_initial_seconds": 4.0, "request_timeout_seconds": 2.0, **settings})
        m = TokenManager([FileSource(creds)], OAuthRefresher(token_url, CLIENT_ID, cfg.request_timeout_seconds), cfg,
                         clock=clock, lock_path=tmp_path / "locks" / "refresh.lock",
                         pending_path=tmp_path / "state" / "pending-login.json", record=events.append,
                         jitter=lambda: 0.0)
        await m.start(watch=watch)
        managers.append(m)
        return m

    yield make
    for m in managers:
        await m.stop()


def stored(creds: Path) -> dict:
    return json.loads(creds.read_text())


async def test_refreshes_ahead_of_expiry_and_writes_back(make_manager, token_endpoint, creds, clock, events):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 3600)
    m = await make_manager()
    assert m.status().state == s.VALID
    # due when max(5 min, 10% of the lifetime we know of) remains: 3600 - 360 s from now
    await clock.advance(3200)
    assert token_endpoint.calls == 0
    await clock.advance(100)
    await eventually_async(lambda: token_endpoint.calls == 1 and not m.refreshing)
    doc = stored(creds)
    new_access = doc["claudeAiOauth"]["accessToken"]
    assert new_access != access and new_access in token_endpoint.valid_access
    assert doc["claudeAiOauth"]["refreshToken"] in token_endpoint.live_refresh
    assert doc["claudeAiOauth"]["expiresAt"] == int((clock.time() + 8 * 3600) * 1000)
    assert os.stat(creds).st_mode & 0o777 == 0o600
    for key, value in UNKNOWN_FIELDS.items():
        assert doc[key] == value
    assert doc["claudeAiOauth"]["somethingNew"] is True and doc["claudeAiOauth"]["subscriptionType"] == "max"
    assert not [p for p in creds.parent.iterdir() if p.name != creds.name]  # no temp files left
    assert await m.token() == new_access
    assert events[-1]["outcome"] == "refreshed" and events[-1]["trigger"] == "scheduled"
    assert events[-1]["old"] and events[-1]["new"] and access not in json.dumps(events)


async def test_fifty_callers_at_expiry_cause_one_refresh(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() - 1)  # already expired
    token_endpoint.delay = 0.2  # keep the refresh in flight while everyone piles in
    m = await make_manager()
    tokens = await asyncio.gather(*(m.token(min_valid=600) for _ in range(50)))
    assert token_endpoint.calls == 1
    assert len(set(tokens)) == 1 and tokens[0] != access


async def test_host_rotation_by_rename_is_adopted_without_refresh(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 3600)
    m = await make_manager(watch=True)
    new_access, new_refresh = token_endpoint.issue()
    write_login(creds, new_access, new_refresh, clock.time() + 8 * 3600, atomic=True)  # tmp + rename
    await eventually_async(lambda: m.login is not None and m.login.access_token == new_access, timeout=2.0)
    assert token_endpoint.calls == 0
    assert await m.token() == new_access


async def test_new_login_after_signed_out_is_picked_up(make_manager, token_endpoint, creds, clock):
    m = await make_manager(watch=True)
    assert m.status().state == s.SIGNED_OUT
    with pytest.raises(NotLoggedIn):
        await m.token()
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 8 * 3600)
    await eventually_async(lambda: m.status().state == s.VALID, timeout=5.0)  # a missing dir is polled for: room for a loaded machine
    assert await m.token() == access


async def test_rereads_before_refreshing_and_adopts_a_rotated_token(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 100)
    m = await make_manager(watch=False)  # the broker misses the host's write
    host_access, host_refresh = token_endpoint.issue()
    write_login(creds, host_access, host_refresh, clock.time() + 8 * 3600)
    await m.refresh("manual")
    assert token_endpoint.calls == 0
    assert await m.token() == host_access


async def test_invalid_grant_after_external_rotation_recovers(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 100)
    m = await make_manager(watch=False)
    host_pair = token_endpoint.issue()

    def host_wins_the_race(presented: str) -> None:
        # The host's Claude Code refreshed with the same refresh token a moment earlier.
        token_endpoint.live_refresh.discard(presented)
        token_endpoint.spent_refresh.discard(presented)
        write_login(creds, host_pair[0], host_pair[1], clock.time() + 8 * 3600)
        token_endpoint.on_request = None

    token_endpoint.on_request = host_wins_the_race
    await m.refresh("manual")
    assert token_endpoint.calls == 1
    assert m.status().state == s.VALID
    assert await m.token() == host_pair[0]


async def test_invalid_grant_signs_out_but_keeps_the_refresh_token(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 100)
    before = creds.read_bytes()
    token_endpoint.fail_next(400, {"error": "invalid_grant", "error_description": "Refresh token revoked"})
    m = await make_manager()
    await m.refresh("manual")
    st = m.status()
    assert st.state == s.SIGNED_OUT and "refused" in st.reason and "claude /login" in st.reason
    assert creds.read_bytes() == before  # nothing destroyed
    with pytest.raises(NotLoggedIn):
        await m.token()


async def test_endpoint_down_keeps_valid_token_and_backs_off(make_manager, token_endpoint, creds, clock, events):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 1000)
    token_endpoint.fail_next(500, count=2)
    m = await make_manager(ahead_min_seconds=1000)  # due now
    await eventually_async(lambda: token_endpoint.calls == 1 and not m.refreshing)
    st = m.status()
    assert st.state == s.EXPIRING and "500" in st.reason and "retrying in" in st.reason
    assert st.next_retry_at == pytest.approx(clock.time() + 2.0)  # 4 s step, equal jitter with 0
    assert await m.token() == access  # still serving the valid token
    await clock.advance(2.0)
    await eventually_async(lambda: token_endpoint.calls == 2 and not m.refreshing)
    assert m.status().next_retry_at == pytest.approx(clock.time() + 4.0)  # doubled
    await clock.advance(4.0)
    await eventually_async(lambda: token_endpoint.calls == 3 and not m.refreshing)
    assert m.status().state == s.VALID and await m.token() != access
    assert [e["outcome"] for e in events] == ["adopted", "failed", "failed", "refreshed"]


async def test_rate_limit_honours_retry_after(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 5000)
    token_endpoint.fail_next(429, {"error": {"type": "rate_limit_error", "message": "slow down"}},
                             headers={"Retry-After": "120"})
    m = await make_manager()
    await m.refresh("manual")
    assert m.status().next_retry_at == pytest.approx(clock.time() + 120)
    assert "rate limiting" in m.status().reason


async def test_token_endpoint_timeout_is_a_transient_failure(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 5000)
    token_endpoint.hang = True
    m = await make_manager(request_timeout_seconds=0.3)
    await m.refresh("manual")
    assert "did not answer in time" in m.status().reason
    assert await m.token() == access
    assert refresh in token_endpoint.live_refresh


async def test_corrupt_or_half_written_file_keeps_last_good_token(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 5000)
    m = await make_manager(watch=True)
    creds.write_text('{"claudeAiOauth": {"accessTo')  # half-written
    await eventually_async(lambda: "not valid JSON" in m.status().reason)
    st = m.status()
    assert st.state == s.VALID and await m.token() == access
    creds.write_text("")
    await eventually_async(lambda: "empty" in m.status().reason)
    assert await m.token() == access


async def test_two_brokers_never_refresh_at_once(token_endpoint, token_url, creds, clock, tmp_path):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() - 1)
    token_endpoint.delay = 0.2
    cfg = RefreshSettings(request_timeout_seconds=5)
    lock = tmp_path / "shared.lock"
    a, b = (TokenManager([FileSource(creds)], OAuthRefresher(token_url, CLIENT_ID), cfg, clock=clock, lock_path=lock)
            for _ in range(2))
    await a.start(watch=False)
    await b.start(watch=False)
    await asyncio.gather(a.refresh("a"), b.refresh("b"))
    assert token_endpoint.calls == 1
    assert a.login.access_token == b.login.access_token == stored(creds)["claudeAiOauth"]["accessToken"]
    await a.stop()
    await b.stop()


async def test_upstream_401_forces_one_refresh(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 5000)
    m = await make_manager()
    await asyncio.gather(*(m.refresh("upstream 401", failed_token=access) for _ in range(5)))
    assert token_endpoint.calls == 1
    new = await m.token()
    await m.refresh("upstream 401", failed_token=access)  # an old token's 401: nothing to do
    await m.refresh("upstream 401", failed_token=new)  # moments after a refresh: not again
    assert token_endpoint.calls == 1


async def test_follow_mode_never_calls_the_endpoint(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 1000)
    m = await make_manager(mode="follow", ahead_min_seconds=300)
    await clock.advance(800)
    assert m.status().state == s.EXPIRING and "follow mode" in m.status().reason
    assert await m.token() == access
    await clock.advance(300)
    assert m.status().state == s.EXPIRED
    assert token_endpoint.calls == 0


async def test_requests_near_expiry_respect_the_backoff(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 500)  # inside a 600 s request margin
    token_endpoint.fail_next(503, count=10)
    m = await make_manager(ahead_min_seconds=60)  # not due on its own schedule yet
    for _ in range(5):
        assert await m.token(min_valid=600) == access  # still valid: served
    assert token_endpoint.calls == 1  # one attempt, then the backoff holds
    await clock.advance(2.0)  # the retry time (4 s step, equal jitter 0)
    assert await m.token(min_valid=600) == access
    assert token_endpoint.calls == 2


async def test_logout_on_the_host_signs_out_and_nothing_is_resurrected(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 200)  # due for refresh soon
    m = await make_manager(watch=True, ahead_min_seconds=100)
    creds.unlink()  # `claude /logout`
    await eventually_async(lambda: m.status().state == s.SIGNED_OUT)
    assert "removed" in m.status().reason
    with pytest.raises(NotLoggedIn):
        await m.token()
    await clock.advance(150)  # past the refresh point: no refresh, no file written back
    assert token_endpoint.calls == 0 and not creds.exists()
    new_access, new_refresh = token_endpoint.issue()
    write_login(creds, new_access, new_refresh, clock.time() + 8 * 3600)  # logs in again
    await eventually_async(lambda: m.status().state == s.VALID)
    assert await m.token() == new_access


async def test_a_refresh_that_finds_the_login_removed_does_not_write_it_back(make_manager, token_endpoint, creds, clock):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 5000)
    m = await make_manager(watch=False)  # the broker misses the deletion event
    creds.unlink()
    await m.refresh("manual")
    assert token_endpoint.calls == 0 and not creds.exists()
    assert m.status().state == s.SIGNED_OUT


@pytest.mark.parametrize("swap", ["directory", "nested JSON", "link to a directory"])
async def test_a_store_that_cannot_be_read_or_written_keeps_the_pair_saved_ahead(
        make_manager, token_endpoint, creds, clock, tmp_path, caplog, swap):
    access, refresh = token_endpoint.issue()
    write_login(creds, access, refresh, clock.time() + 5000)
    before = creds.read_bytes()
    m = await make_manager()
    creds.unlink()
    if swap == "directory":
        creds.mkdir()
    elif swap == "link to a directory":
        (tmp_path / "elsewhere").mkdir()
        creds.symlink_to(tmp_path / "elsewhere")
    else:
        creds.write_text("[" * 200_000)
    await m.refresh("manual")
    new = m.login
    assert new is not None and new.access_token != access and await m.token() == new.access_token
    assert token_endpoint.reused == 0 and new.refresh_token in token_endpoint.live_refresh
    if swap == "nested JSON":  # unreadable but writable: ours replaces it, the only valid pair
        assert json.loads(creds.read_text())["claudeAiOauth"]["refreshToken"] == new.refresh_token
        assert m.status().writeback_problem is None and not m.pending_file.path.exists()
        return
    problem = m.status().writeback_problem
    assert problem.startswith(f"the login could not be written back to file:{creds}: ")
    assert problem.endswith("; the broker holds the current login")
    saved = m.pending_file.path
    assert os.stat(saved).st_mode & 0o777 == 0o600
    data = saved.read_text()
    assert new.refresh_token in data and refresh not in data  # the spent token only as a digest
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert all(t not in logged for t in (access, refresh, new.access_token, new.refresh_token))
    # The user puts the file back as it was (its refresh token is spent): never believed.
    if creds.is_symlink():
        creds.unlink()
    else:
        creds.rmdir()
    creds.write_bytes(before)
    await m.reload("watch")
    assert m.login.access_token == new.access_token
    await clock.advance(60)
    await eventually_async(lambda: not m.state.unsaved, what="the retried write-back")
    assert stored(creds)["claudeAiOauth"]["refreshToken"] == new.refresh_token
    assert not saved.exists() and m.status().writeback_problem is None and token_endpoint.reused == 0
