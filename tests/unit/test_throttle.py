"""Failed-auth limiter with an injected clock."""

from __future__ import annotations

import pytest

from broker.core.throttle import FailureLimiter


def fail(limiter: FailureLimiter, peer: str, times: list[float]) -> None:
    for t in times:
        limiter.record_failure(peer, t)


def test_blocks_after_max_failures_until_oldest_expires():
    lim = FailureLimiter(max_failures=3, window=60.0)
    fail(lim, "p", [0.0, 10.0])
    assert lim.retry_after("p", 10.0) is None
    fail(lim, "p", [20.0])
    assert lim.retry_after("p", 20.0) == pytest.approx(40.0)
    assert lim.retry_after("p", 59.0) == pytest.approx(1.0)
    assert lim.retry_after("p", 60.0) is None  # the failure at 0 left the window


@pytest.mark.parametrize(
    "failures, now, blocked",
    [
        ([0, 1, 2], 2, True),
        ([0, 1], 2, False),
        ([0, 1, 61], 61, False),  # sliding window, not a fixed bucket
        ([0, 30, 59], 59.9, True),
        ([0, 30, 59], 90, False),
    ],
)
def test_sliding_window(failures, now, blocked):
    lim = FailureLimiter(max_failures=3, window=60.0)
    fail(lim, "p", failures)
    assert (lim.retry_after("p", now) is not None) is blocked


def test_peers_are_independent_and_success_clears():
    lim = FailureLimiter(max_failures=2, window=60.0)
    fail(lim, "a", [0, 1])
    assert lim.retry_after("a", 1) is not None
    assert lim.retry_after("b", 1) is None
    lim.record_success("a")
    assert lim.retry_after("a", 1) is None
    lim.record_success("never-seen")


def test_failures_while_blocked_extend_the_block():
    lim = FailureLimiter(max_failures=2, window=10.0)
    fail(lim, "p", [0, 1, 5])
    assert lim.retry_after("p", 5) == pytest.approx(6.0)  # oldest kept failure is at 1


def test_stale_peers_are_forgotten():
    lim = FailureLimiter(max_failures=5, window=10.0)
    for i in range(100):
        lim.record_failure(f"p{i}", float(i))
    assert len(lim) <= 11
    assert lim.retry_after("p0", 100.0) is None


def test_peer_count_is_capped():
    lim = FailureLimiter(max_failures=5, window=1e9, max_peers=50)
    for i in range(1000):
        lim.record_failure(f"p{i}", float(i))
    assert len(lim) == 50
    fail(lim, "p999", [1000, 1001, 1002, 1003])
    assert lim.retry_after("p999", 1003) is not None


def test_memory_per_peer_is_bounded():
    lim = FailureLimiter(max_failures=3, window=1e9)
    fail(lim, "p", [float(i) for i in range(10_000)])
    assert len(lim._failures["p"]) == 3


@pytest.mark.parametrize("kwargs", [{"max_failures": 0}, {"window": 0}, {"max_peers": 0}])
def test_rejects_nonsense_settings(kwargs):
    with pytest.raises(ValueError):
        FailureLimiter(**kwargs)
