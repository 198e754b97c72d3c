"""The dashboard in a real browser: Debian's chromium, headless, driven by Playwright.

Opened through the one-time link, it shows a request proxied a moment ago in the charts;
its Revoke button ends a sandbox's access (the next request gets 401). The browser itself
is refused with a wrong Host, from a foreign page, without the cookie, and with a spent link.
Screenshots land in test-artifacts/ for a person to look at.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from aiohttp import web

from tests.integration.test_proxy import call
from tests.support import require

CHROMIUM = os.environ.get("INFERENCE_BROKER_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--host-resolver-rules=MAP rebind.test 127.0.0.1"]  # a DNS-rebinding stand-in, no DNS needed
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
async def browser():
    require(Path(CHROMIUM).exists(), f"no chromium at {CHROMIUM} (apt-get install chromium)")
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        require(False, "the playwright Python package is missing (pip install -e '.[test]')")
    ARTIFACTS.mkdir(exist_ok=True)
    async with async_playwright() as pw:
        chromium = await pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield chromium
        finally:
            await chromium.close()


async def evil_site(aiohttp_server, target: str) -> str:
    """Another page on loopback (same *site*, other origin) that posts a Revoke to the dashboard."""
    html = (f'<!doctype html><form method="post" action="{target}/action/revoke">'
            '<input name="name" value="beta"><input name="csrf" value="guessed">'
            '<button id="go">win a prize</button></form>')

    async def page(_: web.Request) -> web.Response:
        return web.Response(text=html, content_type="text/html")

    app = web.Application()
    app.router.add_get("/", page)
    server = await aiohttp_server(app)
    return str(server.make_url("/"))


async def test_dashboard_in_chromium(make_broker, browser, aiohttp_server):
    b = await make_broker(limit_headers={"5h-utilization": "0.62", "7d-utilization": "0.31"})
    alpha, beta = await b.add_sandbox("alpha"), await b.add_sandbox("beta")
    assert (await call(b, key=alpha))[0] == 200
    url = (await b.service.handle_control({"op": "dashboard_url"}))["url"]
    base = f"http://{urlsplit(url).netloc}"
    port = urlsplit(url).port

    context = await browser.new_context(viewport={"width": 1000, "height": 1400})
    page = await context.new_page()
    response = await page.goto(url)
    assert response.status == 200 and page.url == base + "/"
    cookie = next(c for c in await context.cookies() if c["name"] == "ib_dashboard")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert await page.evaluate("document.cookie") == ""  # HttpOnly: no script can read it
    # The request just proxied is in the per-sandbox chart and its table; gauges show the headers.
    assert await page.locator('#by-sandbox svg rect[data-group="alpha"]').count() >= 1
    assert await page.locator('#by-sandbox tr[data-sandbox="alpha"] td.requests').inner_text() == "1"
    assert await page.locator('#limits [data-window="five_hour"]').get_attribute("data-percent") == "62.0"
    assert await page.locator('#limits [data-window="seven_day"]').get_attribute("data-percent") == "31.0"
    assert "Weekly\n31%" in await page.locator("#limits").inner_text()
    await page.screenshot(path=str(ARTIFACTS / "dashboard-1-opened.png"), full_page=True)

    assert (await call(b, key=beta))[0] == 200
    await page.reload()
    assert await page.locator('#by-sandbox svg rect[data-group="beta"]').count() >= 1

    # Revoke alpha with its button: the page comes back without it, and its key stops working.
    await page.get_by_role("button", name="Revoke alpha").click()
    await page.wait_for_url(base + "/?range=24h")
    assert await page.locator('#sandboxes tr[data-sandbox="alpha"]').count() == 0
    assert await page.locator('#sandboxes tr[data-sandbox="beta"]').count() == 1
    assert (await call(b, key=alpha))[0] == 401
    assert (await call(b, key=beta))[0] == 200
    await page.screenshot(path=str(ARTIFACTS / "dashboard-2-revoked.png"), full_page=True)

    # A foreign page in the same browser (cookie and all) cannot act: its Origin is not ours.
    foreign = await context.new_page()
    await foreign.goto(await evil_site(aiohttp_server, base))
    async with foreign.expect_navigation() as nav:
        await foreign.click("#go")
    assert (await nav.value).status == 403
    assert (await call(b, key=beta))[0] == 200
    # The spent link, a wrong Host (a rebinding name) and a browser without the cookie: refused.
    replay = await page.goto(url)
    assert replay.status == 403 and "already used" in await page.inner_text("body")
    await page.screenshot(path=str(ARTIFACTS / "dashboard-3-replayed-link.png"))
    rebind = await page.goto(f"http://rebind.test:{port}/")
    assert rebind.status == 421
    stranger = await (await browser.new_context()).new_page()
    bare = await stranger.goto(base + "/")
    assert bare.status == 401 and "inference-broker dashboard" in await stranger.inner_text("body")
    html = await page.goto(base + "/")
    text = await html.text()
    for label, secret in b.secrets().items():
        assert secret not in text, label
    assert b.fake.problems == []
    assert shutil.disk_usage(ARTIFACTS).free > 0 and (ARTIFACTS / "dashboard-2-revoked.png").stat().st_size > 10_000
