"""Connection table and in-flight body budget: pure policies, injected time."""

from __future__ import annotations

import pytest

from broker.proxy.connection_limits import ConnectionTable
from broker.proxy.inflight import InflightBytes


def test_at_the_cap_the_oldest_idle_unauthenticated_connection_makes_room():
    t = ConnectionTable(cap=3, header_timeout=10, idle_timeout=75)
    assert t.opened("sandbox", 0.0) is None
    t.authenticated("sandbox")
    assert t.opened("flood1", 1.0) is None and t.opened("flood2", 2.0) is None
    assert t.opened("flood3", 3.0) == "flood1"  # the flood evicts itself, never the sandbox
    assert t.opened("late-sandbox", 4.0) == "flood2"
    assert len(t) == 3 and t.evicted == 2


def test_when_all_are_busy_or_authenticated_the_newcomer_is_turned_away():
    t = ConnectionTable(cap=2, header_timeout=10, idle_timeout=75)
    t.opened("a", 0.0)
    t.authenticated("a")
    t.opened("b", 0.0)
    t.started("b", 0.5)
    assert t.opened("c", 1.0) == "c" and t.refused == 1


def test_unauthenticated_connections_get_short_patience_authenticated_ones_keepalive():
    t = ConnectionTable(cap=10, header_timeout=10, idle_timeout=75)
    for cid in ("silent", "sandbox", "busy"):
        t.opened(cid, 0.0)
    t.authenticated("sandbox")
    t.started("busy", 1.0)
    assert t.expired(9.0) == []
    assert t.expired(10.5) == ["silent"]  # a slowloris or a held-open socket
    t.closed("silent")
    assert t.expired(74.0) == []  # the busy one is never cut by the sweeper
    assert t.expired(76.0) == ["sandbox"]


def test_inflight_bytes_per_sandbox_and_total():
    b = InflightBytes(per_sandbox=100, total=150)
    assert b.reserve("a", 60) is None and b.reserve("a", 41) == 429
    assert b.reserve("b", 80) is None and b.reserve("c", 20) == 503
    b.release("a", 60)
    assert b.reserve("c", 20) is None and b.held == 100 and b.of("a") == 0


@pytest.mark.parametrize("cls, kw", [(ConnectionTable, {"cap": 0, "header_timeout": 1, "idle_timeout": 1}),
                                     (InflightBytes, {"per_sandbox": 0, "total": 1})])
def test_nonsense_limits_are_refused(cls, kw):
    with pytest.raises(ValueError):
        cls(**kw)
