"""Dashboard access rules, with the clock passed in."""

from broker.dashboard.auth import MAX_SESSIONS, DashboardAuth, csrf_ok, host_ok, origin_ok

NOW = 1_800_000_000.0


def test_a_link_token_works_once():
    auth = DashboardAuth()
    token = auth.new_link_token(NOW)
    got = auth.redeem(token, NOW + 1)
    assert isinstance(got, tuple)
    sid, session = got
    assert auth.session(sid, NOW + 2) is session
    again = auth.redeem(token, NOW + 3)
    assert isinstance(again, str) and "already used" in again
    assert "not valid" in auth.redeem("made-up", NOW)
    assert "not valid" in auth.redeem(None, NOW)


def test_links_and_sessions_expire():
    auth = DashboardAuth(ttl=60, session_ttl=100)
    late = auth.new_link_token(NOW)
    assert "not valid" in auth.redeem(late, NOW + 61)
    sid, _ = auth.redeem(auth.new_link_token(NOW), NOW)
    assert auth.session(sid, NOW + 99) is not None  # use extends it
    assert auth.session(sid, NOW + 198) is not None
    assert auth.session(sid, NOW + 299) is None
    assert auth.session(None, NOW) is None and auth.session("nope", NOW) is None


def test_sessions_are_bounded():
    auth = DashboardAuth()
    sids = [auth.redeem(auth.new_link_token(NOW + i), NOW + i)[0] for i in range(MAX_SESSIONS + 3)]
    assert auth.session(sids[0], NOW + 100) is None and auth.session(sids[-1], NOW + 100) is not None


def test_csrf_host_origin():
    auth = DashboardAuth()
    _, session = auth.redeem(auth.new_link_token(NOW), NOW)
    assert csrf_ok(session, session.csrf) and not csrf_ok(session, "x") and not csrf_ok(session, None)
    assert host_ok("127.0.0.1:8000", 8000) and host_ok("LOCALHOST:8000", 8000)
    for bad in (None, "", "127.0.0.1", "127.0.0.1:8001", "evil.example:8000", "inference.local:8000"):
        assert not host_ok(bad, 8000)
    assert origin_ok(None, 8000, required=False) and not origin_ok(None, 8000, required=True)
    assert origin_ok("http://127.0.0.1:8000", 8000, required=True)
    for bad in ("https://evil.example", "http://127.0.0.1:8001", "null", "http://localhost.evil:8000"):
        assert not origin_ok(bad, 8000, required=False)
