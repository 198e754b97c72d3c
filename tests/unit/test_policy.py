import pytest

from broker.status import snapshot as s
from broker.config.settings import RefreshSettings
from broker.login.refresh_timing import Facts, backoff_delay, refresh_due_at, token_state

R = RefreshSettings()


@pytest.mark.parametrize("expires, obtained, due", [
    (10_000, 10_000 - 8 * 3600, 10_000 - 0.1 * 8 * 3600),  # 10% of an 8 h lifetime: 48 min ahead
    (10_000, 10_000 - 1800, 10_000 - 300),  # short lifetime: the 5 min floor wins
    (10_000, None, 10_000 - 300),  # unknown lifetime: the floor
])
def test_refresh_due(expires, obtained, due):
    assert refresh_due_at(expires, obtained, R) == pytest.approx(due)


@pytest.mark.parametrize("attempt, jitter, retry_after, expected", [
    (0, 0.0, None, 2.5), (0, 0.999, None, 5.0 - 0.0025), (1, 0.0, None, 5.0), (3, 0.0, None, 20.0),
    (20, 0.0, None, 300.0),  # capped at backoff_max (600) before jitter halves it
    (0, 0.0, 120.0, 120.0),  # Retry-After wins when longer
])
def test_backoff(attempt, jitter, retry_after, expected):
    assert backoff_delay(attempt, R, jitter, retry_after) == pytest.approx(expected, abs=0.01)


@pytest.mark.parametrize("facts, state, words", [
    (Facts(now=0, has_login=False, expires_at=None), s.SIGNED_OUT, "claude /login"),
    (Facts(now=0, has_login=True, expires_at=3600 * 5 + 12 * 60), s.VALID, "valid for 5 h 12 min"),
    (Facts(now=0, has_login=True, expires_at=100, refreshing=True), s.REFRESHING, "refreshing"),
    (Facts(now=0, has_login=True, expires_at=1000, last_error="500", next_retry_at=40), s.EXPIRING,
     "refresh failing: 500 — retrying in 40 s"),
    (Facts(now=10, has_login=True, expires_at=5, last_error="down"), s.EXPIRED, "refresh failing: down"),
    (Facts(now=0, has_login=True, expires_at=100, signed_out_reason="refused"), s.SIGNED_OUT, "refused"),
    (Facts(now=0, has_login=True, expires_at=100, mode="follow", due_at=-1), s.EXPIRING, "follow mode"),
    (Facts(now=0, has_login=True, expires_at=None, mode="static"), s.VALID, "long-lived"),
])
def test_token_state(facts, state, words):
    got_state, reason = token_state(facts)
    assert got_state == state and words in reason
