"""The token manager's decisions, with plain numbers: no clock, no socket, no file."""

import pytest

from broker.login import pending as pd
from broker.login import token_state as ts
from broker.config.settings import RefreshSettings
from broker.login.credentials import OAuthLogin

R = RefreshSettings()
NOW = 1_000_000.0


def login(access="a1", refresh="r1", expires=NOW + 3600) -> OAuthLogin:
    return OAuthLogin(access_token=access, refresh_token=refresh, expires_at=expires)


def held(**kw) -> ts.TokenState:
    return ts.TokenState(login=kw.pop("login", login()), obtained_at=NOW - 100, **kw)


def test_no_login_or_signed_out_never_wakes():
    assert ts.next_wake(ts.TokenState(), "own", R, NOW) == ts.Wake(None)
    assert ts.next_wake(held(signed_out_reason="refused"), "own", R, NOW) == ts.Wake(None)
    assert ts.next_wake(held(), "static", R, NOW) == ts.Wake(None)


def test_own_mode_wakes_to_refresh_when_due_or_at_the_retry():
    assert ts.next_wake(held(), "own", R, NOW) == ts.Wake(NOW + 3600 - 370, ts.REFRESH)  # 10% of 3700 s
    assert ts.next_wake(held(next_retry_at=NOW + 7), "own", R, NOW) == ts.Wake(NOW + 7, ts.REFRESH)


def test_an_unsaved_pair_wakes_to_save_first_and_backs_off():
    new = login("a2", "r2")
    st = ts.pair_received(held(), pd.after_refresh(None, login(), new, "file:x", NOW))
    st = ts.save_failed(st, "file:x", "No space left on device", R, 1.0, NOW)
    assert st.unsaved and ts.next_wake(st, "own", R, NOW) == ts.Wake(NOW + R.backoff_initial_seconds, ts.SAVE)
    assert st.save_error == ("the login could not be written back to file:x: No space left on device; "
                             "the broker holds the current login")
    again = ts.save_failed(st, "file:x", "still full", R, 1.0, NOW)
    assert again.next_save_at == NOW + 2 * R.backoff_initial_seconds  # doubled
    assert not ts.saved(again).unsaved and ts.saved(again).save_error is None


def test_a_store_still_holding_a_replaced_login_is_stale_never_adopted():
    first, second = login("a2", "r2"), login("a3", "r3")
    p1 = pd.after_refresh(None, login(), first, "file:x", NOW)
    p2 = pd.after_refresh(p1, first, second, "file:x", NOW)  # refreshed again before any write-back
    st = ts.pair_received(held(login=second), p2)
    assert ts.read_verdict(st, login(), []) == ts.STALE  # the store never got the first pair
    assert ts.read_verdict(st, first, []) == ts.STALE  # or got it and not the second
    assert ts.read_verdict(st, second, []) == ts.HELD
    assert ts.read_verdict(st, None, ["unreadable"]) == ts.NOTHING  # keep serving on ours
    assert ts.read_verdict(st, login("a9", "r9"), []) == ts.ADOPT  # a new `claude /login` wins
    assert ts.read_verdict(st, None, []) == ts.REMOVED
    assert not ts.rotated_elsewhere(second, login(), p2) and ts.rotated_elsewhere(second, login())


def test_follow_mode_wakes_only_to_report_the_marks_ahead():
    st = held()
    assert ts.next_wake(st, "follow", R, NOW) == ts.Wake(NOW + 3600 - 370, ts.REPORT)
    assert ts.next_wake(st, "follow", R, NOW + 3500) == ts.Wake(NOW + 3600, ts.REPORT)
    assert ts.next_wake(st, "follow", R, NOW + 4000) == ts.Wake(None, ts.REPORT)


@pytest.mark.parametrize("kw, mode, min_valid, expected", [
    ({}, "own", 600, False),  # an hour left: no wait
    ({}, "own", 4000, True),
    ({}, "follow", 4000, False),  # follow mode never refreshes
    ({"signed_out_reason": "refused"}, "own", 4000, False),
    ({"next_retry_at": NOW + 10}, "own", 4000, False),  # backing off: serve what we have
    ({"next_retry_at": NOW}, "own", 4000, True),
])
def test_request_refreshes(kw, mode, min_valid, expected):
    assert ts.request_refreshes(held(**kw), mode, min_valid, NOW) is expected


def test_a_401_refreshes_the_current_token_once_in_a_while():
    st = held()
    assert ts.forced_refresh_allowed(st, "a1", NOW)
    assert not ts.forced_refresh_allowed(st, "old", NOW)  # already replaced
    recent = held(last_forced=NOW - 10)
    assert not ts.forced_refresh_allowed(recent, "a1", NOW)
    assert ts.forced_refresh_allowed(recent, "a1", NOW + ts.MIN_FORCED_INTERVAL)


def test_read_verdicts():
    st = held()
    assert ts.read_verdict(st, login(), []) == ts.NOTHING
    assert ts.read_verdict(st, login("a2", "r2"), []) == ts.ADOPT
    assert ts.read_verdict(st, None, []) == ts.REMOVED  # `claude /logout`
    assert ts.read_verdict(st, None, ["not valid JSON"]) == ts.NOTHING  # unreadable: keep the last good
    assert ts.read_verdict(ts.TokenState(), None, []) == ts.NOTHING


def test_rotated_elsewhere():
    mine = login()
    assert ts.rotated_elsewhere(mine, login("a2", "r2"))  # a new pair
    assert not ts.rotated_elsewhere(mine, login())
    assert not ts.rotated_elsewhere(mine, None)
    # same refresh token, an older access token: not newer than ours
    assert not ts.rotated_elsewhere(mine, login("a0", "r1", expires=NOW))
    assert ts.rotated_elsewhere(mine, login("a2", "r1", expires=NOW + 7200))


def test_failures_back_off_and_adoption_resets():
    st = ts.failed(held(), "500", R, jitter=0.0, now=NOW)
    assert (st.attempt, st.last_error, st.next_retry_at) == (1, "500", NOW + 2.5)
    st = ts.failed(st, "500", R, jitter=0.0, now=NOW)
    assert st.next_retry_at == NOW + 5.0
    assert ts.failed(st, "429", R, 0.0, NOW, retry_after=120).next_retry_at == NOW + 120
    new = ts.adopted(st, login("a2", "r2"), NOW + 1, refreshed=True)
    assert (new.attempt, new.last_error, new.next_retry_at, new.last_refresh) == (0, None, None, NOW + 1)


def test_removed_and_signed_out():
    gone = ts.removed(held(), "file:/x")
    assert gone.login is None and "removed from file:/x" in (gone.last_error or "")
    out = ts.signed_out(held(next_retry_at=NOW), "invalid_grant")
    assert out.signed_out_reason == "the login was refused (invalid_grant)" and out.next_retry_at is None


def test_a_margin_longer_than_the_lifetime_is_clamped_and_a_fresh_token_is_left_alone():
    st = ts.adopted(ts.TokenState(), login(expires=NOW + 300), NOW, refreshed=True)  # a 300-s token, just minted
    assert st.lifetime == 300
    assert not ts.request_refreshes(st, "own", 600, NOW + 5)  # minted seconds ago
    assert not ts.request_refreshes(st, "own", 600, NOW + 100)  # 200 s left: more than half its lifetime
    assert ts.request_refreshes(st, "own", 600, NOW + 160)  # under half left
    assert ts.due_at(st, R) == NOW + 150  # not "at once": 300 s ahead would be its whole life
    tiny = ts.adopted(ts.TokenState(), login(expires=NOW + 20), NOW, refreshed=True)
    assert ts.due_at(tiny, R) == NOW + 20  # never before it is MIN_TOKEN_AGE old, never after expiry
    adopted = ts.adopted(ts.TokenState(), login(expires=NOW + 500), NOW)  # the host's: lifetime unknown
    assert ts.request_refreshes(adopted, "own", 600, NOW)
