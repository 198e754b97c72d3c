"""The tray and the dashboard name the login and how to get it back in the provider profile's
words, not Claude Code's.

A broker on the `anthropic` (API key) profile, with an empty real keyring: the menu, the
tooltip and the notification must point at `login --api-key`, never at `claude /login`.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from broker.config.files import profile_for
from broker.config.settings import Config
from broker.tray.menu import build_menu, tooltip
from broker.tray.notifications import notification
from broker.status.snapshot import SIGNED_OUT, VALID, TokenStatus
from broker.dashboard.views import DashboardViews
from broker.runtime.service import Service
from tests.secret_service import secret_service


async def test_api_key_profile_menu_says_to_store_a_key(tmp_path: Path, sdk_env: None) -> None:
    config = Config(provider="anthropic", listen=("127.0.0.1:0",), state_dir=tmp_path / "state")
    hint = profile_for(config).login_hint
    assert "login --api-key" in hint
    with secret_service(tmp_path / "secrets"):
        service = Service(config)
        service.set_autostart_probe(lambda: False)
        await service.start()
        try:
            snap = service.snapshot()
            page = await DashboardViews(service).page({}, "csrf")
        finally:
            await service.stop()

    assert snap.provider == "anthropic" and snap.token.state == SIGNED_OUT
    labels = [e.label for e in build_menu(snap)]
    assert labels[0] == "Anthropic API key"  # the profile's label, not "Claude subscription"
    assert f"Signed out — {hint}" in labels
    assert "Anthropic API key: Signed out" in page and "claude /login" not in page
    before = replace(snap, token=TokenStatus(VALID, reason="token valid"))
    title, message = notification(before, snap) or ("", "")
    assert title == "Claude login lost" and hint in message
    for text in [*labels, tooltip(snap), message]:
        assert "claude /login" not in text, text
