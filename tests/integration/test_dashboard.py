"""The local dashboard over real HTTP: the one-time link, the cookie, Host/Origin/CSRF checks,
the page's contents against `usage` and `status`, and no secret anywhere in it."""

from __future__ import annotations

import json
import re
from urllib.parse import urlsplit

import aiohttp

from tests.integration.conftest import Broker
from tests.integration.test_proxy import call
from tests.integration.test_usage_ledger import cli, two_sandboxes, write_config

COOKIE = "ib_dashboard"


async def get(url: str, *, cookie: str | None = None, headers: dict[str, str] | None = None,
              method: str = "GET", data: dict | None = None) -> tuple[int, aiohttp.typedefs.LooseHeaders, str]:
    hdrs = dict(headers or {})
    if cookie:
        hdrs["Cookie"] = f"{COOKIE}={cookie}"
    async with aiohttp.ClientSession(cookie_jar=aiohttp.DummyCookieJar()) as s:
        async with s.request(method, url, headers=hdrs, data=data, allow_redirects=False) as r:
            return r.status, r.headers, await r.text()


async def login(b: Broker) -> tuple[str, str]:
    """(base URL, session cookie) through a fresh one-time link."""
    url = (await b.service.handle_control({"op": "dashboard_url"}))["url"]
    status, headers, _ = await get(url)
    assert status == 303 and headers["Location"] == "/"
    set_cookie = headers["Set-Cookie"]
    assert "HttpOnly" in set_cookie and "SameSite=Strict" in set_cookie and "Path=/" in set_cookie
    sid = re.match(rf"{COOKIE}=([^;]+)", set_cookie).group(1)
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}", sid


def csrf_of(page: str) -> str:
    return re.search(r'name="csrf" value="([^"]+)"', page).group(1)


async def test_page_agrees_with_usage_and_status_and_holds_no_secret(make_broker, tmp_path, capsys):
    b = await make_broker(limit_headers={"5h-utilization": "0.62", "7d-utilization": "0.31"})
    await two_sandboxes(b)
    base, sid = await login(b)
    assert urlsplit(base).hostname == "127.0.0.1"
    assert urlsplit(base).port not in {int(a.rsplit(":", 1)[1]) for a in b.service.proxy.bound}
    status, headers, page = await get(base + "/", cookie=sid)
    assert status == 200
    assert "default-src 'none'" in headers["Content-Security-Policy"] and headers["Cache-Control"] == "no-store"
    # Gauges show the fake's header values.
    assert re.search(r'data-window="five_hour" data-percent="62.0"', page)
    assert re.search(r'data-window="seven_day" data-percent="31.0"', page)
    assert "5-hour 62%" in page and "Weekly 31%" in page
    # The page's per-sandbox totals match `usage --by sandbox` and `status --json`.
    config = write_config(b, tmp_path)
    usage = {r["sandbox"]: r for r in json.loads(await cli(capsys, config, "usage", "--json"))["rows"]}
    status_doc = json.loads(await cli(capsys, config, "status", "--json"))
    for sb in status_doc["sandboxes"]:
        row = re.search(rf'<tr data-sandbox="{sb["name"]}"><td>.*?</td><td class="num requests">(\d+)</td>'
                        rf'<td class="num input">(\d+)</td><td class="num output">(\d+)</td>', page)
        assert row, sb["name"]
        shown = tuple(int(x) for x in row.groups())
        assert shown == (usage[sb["name"]]["requests"], usage[sb["name"]]["input_tokens"],
                         usage[sb["name"]]["output_tokens"])
        assert shown == (sb["requests"], sb["input_tokens"], sb["output_tokens"])
    assert status_doc["limits"]["five_hour"]["utilization"] == 62.0
    assert 'data-model="claude-haiku-4-5"' in page and 'data-model="claude-sonnet-4-6"' in page
    assert "<svg" in page and "<script" not in page and "http://" not in page.replace(base, "")
    for label, secret in b.secrets().items():
        assert secret not in page, label
    for rng in ("7d", "30d"):
        assert (await get(f"{base}/?range={rng}", cookie=sid))[0] == 200
    # `inference-broker dashboard --print` hands out a link of its own, good once.
    link = (await cli(capsys, config, "dashboard", "--print")).strip()
    assert link.startswith(base + "/login?t=")
    assert (await get(link))[0] == 303 and (await get(link))[0] == 403


async def test_the_door_refuses_strangers(make_broker):
    b = await make_broker()
    url = (await b.service.handle_control({"op": "dashboard_url"}))["url"]
    parts = urlsplit(url)
    base = f"http://{parts.netloc}"
    port = parts.port
    # A wrong Host (DNS rebinding, the proxy's name, another port) is refused before anything else.
    for host in ("evil.example", f"evil.example:{port}", f"inference.local:{port}", f"127.0.0.1:{port + 1}"):
        status, _, _ = await get(url, headers={"Host": host})
        assert status == 421, host
    # A foreign Origin is refused, even with a good link.
    status, _, _ = await get(url, headers={"Origin": "https://evil.example"})
    assert status == 403
    # No cookie: no page.
    status, _, body = await get(base + "/")
    assert status == 401 and "inference-broker dashboard" in body
    # The link works once (it survived the refusals above), then is spent.
    status, headers, _ = await get(url)
    assert status == 303
    sid = re.match(rf"{COOKIE}=([^;]+)", headers["Set-Cookie"]).group(1)
    status, _, body = await get(url)
    assert status == 403 and "already used" in body
    status, _, _ = await get(base + "/", cookie=sid)  # the session the link gave still works
    assert status == 200
    status, _, _ = await get(f"{base}/login?t=made-up")
    assert status == 403
    status, _, _ = await get(base + "/", cookie="forged")
    assert status == 401


async def test_actions_need_csrf_and_same_origin_then_revoke_works(make_broker):
    b = await make_broker()
    key = await b.add_sandbox("victim")
    base, sid = await login(b)
    _, _, page = await get(base + "/", cookie=sid)
    csrf = csrf_of(page)
    form = {"name": "victim", "range": "24h"}
    same = {"Origin": base}
    assert (await get(base + "/action/revoke", method="POST", cookie=sid, headers=same, data=form))[0] == 403
    bad = {**form, "csrf": "wrong"}
    assert (await get(base + "/action/revoke", method="POST", cookie=sid, headers=same, data=bad))[0] == 403
    good = {**form, "csrf": csrf}
    status, _, _ = await get(base + "/action/revoke", method="POST", cookie=sid, data=good)  # no Origin
    assert status == 403
    status, _, _ = await get(base + "/action/revoke", method="POST", cookie=sid, data=good,
                             headers={"Origin": "http://127.0.0.1:1"})
    assert status == 403
    status, _, _ = await get(base + "/action/revoke", method="POST", headers=same, data=good)  # no cookie
    assert status == 401
    assert (await call(b, key=key))[0] == 200  # nothing above revoked it
    status, headers, _ = await get(base + "/action/revoke", method="POST", cookie=sid, headers=same, data=good)
    assert status == 303
    assert (await call(b, key=key))[0] == 401
    status, _, body = await get(base + "/action/budget", method="POST", cookie=sid, headers=same,
                                data={"name": "victim", "budget": "1k/1h", "csrf": csrf})
    assert status == 400 and "no sandbox named" in body


async def test_a_taken_dashboard_port_leaves_the_proxy_serving(make_broker, tmp_path):
    import socket

    from broker.config.settings import Config
    from broker.common.errors import BrokerError
    from broker.runtime.service import Service

    b = await make_broker()
    taken = b.service.dashboard.port  # the first broker's dashboard holds it
    config = Config(**{**b.service.config.__dict__, "dashboard_port": taken, "state_dir": tmp_path / "second",
                       "listen": ("127.0.0.1:0",)})
    second = Service(config)
    second.set_autostart_probe(lambda: False)
    await second.start()
    try:
        assert second.dashboard is None and second.proxy.bound
        try:
            await second.handle_control({"op": "dashboard_url"})
        except BrokerError as exc:
            assert "could not start" in exc.message and "dashboard_port" in exc.message
        else:
            raise AssertionError("a dashboard URL without a dashboard")
        with socket.create_connection(("127.0.0.1", int(second.proxy.bound[0].rsplit(":", 1)[1])), timeout=5):
            pass
    finally:
        await second.stop()
