"""The wrong-key throttle: failures only, per peer and in total, with an injected clock."""

from __future__ import annotations

import pytest

from broker.proxy.throttle import FailureThrottle


def fail(t: FailureThrottle, peer: str, n: int, now: float = 0.0) -> list[float | None]:
    return [t.failure(peer, now).retry_after for _ in range(n)]


def test_a_peer_is_refused_after_its_own_failures_until_the_window_passes():
    t = FailureThrottle(per_peer=3, total=100, window=60.0)
    assert fail(t, "p", 3, now=0.0) == [None, None, None]
    assert t.failure("p", 10.0).retry_after == pytest.approx(50.0)
    assert all(fail(t, "p", 3, now=30.0))
    assert t.failure("p", 61.0).retry_after is not None  # refused failures count: still guessing
    assert t.failure("p", 200.0).retry_after is None  # quiet for a window: 401 again


def test_many_addresses_share_one_total_budget():
    # Finding: 200 addresses in 127.0.0.0/8 made 200 guesses and never saw a 429.
    t = FailureThrottle(per_peer=10, total=50, window=60.0)
    verdicts = [t.failure(f"127.0.0.{i}", 1.0) for i in range(200)]
    assert sum(v.retry_after is None for v in verdicts) == 50
    assert all(v.retry_after is not None for v in verdicts[50:])
    assert verdicts[50].why == "from all addresses together"


def test_a_success_does_not_reset_the_count():
    # Finding: one valid request every 9 wrong ones reset the count. Successes are not
    # recorded here at all: the proxy only reports failures.
    t = FailureThrottle(per_peer=10, total=1000, window=60.0)
    answers = [t.failure("p", float(i)).retry_after for i in range(30)]
    assert answers[:10] == [None] * 10 and all(a is not None for a in answers[10:])


def test_evicting_peer_records_does_not_unblock_while_the_total_is_spent():
    # Finding: 4,100 failures from other addresses evicted a blocked peer's record.
    t = FailureThrottle(per_peer=5, total=100, window=60.0, max_peers=64)
    fail(t, "guesser", 5)
    for i in range(4100):
        t.failure(f"10.0.{i // 250}.{i % 250}", 2.0)
    assert len(t) <= 64
    assert t.failure("guesser", 3.0).retry_after is not None


def test_storms_are_logged_once_per_window():
    t = FailureThrottle(per_peer=2, total=1000, window=60.0)
    logs = [t.failure("p", 1.0).log for _ in range(100)]
    assert logs[:3] == [True, True, True] and not any(logs[3:])
    assert t.refused == 98
    assert t.failure("p", 62.0).log  # a new window: one more line


def test_memory_is_bounded():
    t = FailureThrottle(per_peer=3, total=10, window=1e9, max_peers=50)
    for i in range(10_000):
        t.failure(f"peer{i}", float(i))
    assert len(t) == 50 and len(t._all) == 10
    assert all(len(times) <= 3 for times in t._peers.values())


@pytest.mark.parametrize("kw", [{"per_peer": 0}, {"total": 0}, {"window": 0}, {"max_peers": 0}])
def test_rejects_nonsense_settings(kw):
    with pytest.raises(ValueError):
        FailureThrottle(**kw)
