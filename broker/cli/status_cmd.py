"""`inference-broker status [--json]`: the token, the proxy and the sandboxes, in words."""

from __future__ import annotations

import argparse
import json
from datetime import datetime
from typing import Any

from broker.cli.common import ask_or_none, config_of
from broker.config.settings import Config
from broker.common.wording import login_hint


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show the token state, the proxy and the sandboxes")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--poll", action="store_true", help="ask the plan's usage endpoint first (where the login allows)")
    p.set_defaults(func=main)


def offline_status(config: Config) -> dict[str, Any]:
    """What a broker would see now, when none is running: read the login ourselves."""
    from broker.sandboxes.key_store import KeyStore
    from broker.config.files import profile_for
    from broker.login.pending_file import NAME as PENDING_NAME
    from broker.login.source_setup import build_sources
    from broker.login.token_manager import TokenManager

    profile = profile_for(config)
    tokens = TokenManager(build_sources(config, profile), None, config.refresh,
                          login_hint=login_hint(profile.login_hint), pending_path=config.state_dir / PENDING_NAME)
    tokens.load_now()
    token = tokens.status()
    with KeyStore(config.keystore_path) as store:
        sandboxes = [s.to_json() for s in store.list()]
        paused = store.paused()
    return {
        "running": False,
        "provider": profile.name,
        "token": token.to_json(),
        "refresh": {"mode": token.mode},
        "listen": [],
        "proxy": {"listen": [], "paused": paused, "requests_today": 0, "active_streams": 0, "plan_limits": {}},
        "sandboxes": sandboxes,
        "limits": {"poll": "off: the broker is not running"},
    }


def main(args: argparse.Namespace) -> int:
    config = config_of(args)
    reply = ask_or_none(config, {"op": "status", "poll_limits": bool(args.poll)})
    status = {"running": True, **reply["status"]} if reply else offline_status(config)
    if args.json:
        print(json.dumps(status, indent=2))
    else:
        print(render(status))
    return 0


def token_line(t: dict[str, Any]) -> str:
    """The token's state, plan and reason (all of it): what `status` and `refresh` both say."""
    plan = f" ({t['subscription_type']} plan)" if t.get("subscription_type") else ""
    return f"token:    {t['state']}{plan}: {t['reason']}"


def render(st: dict[str, Any]) -> str:
    t = st["token"]
    lines = [f"broker:   {'running' if st['running'] else 'not running (start it with `inference-broker run`)'}"
             f" — provider {st['provider']}", token_line(t)]
    if t.get("source"):
        lines.append(f"          from {t['source']}, fingerprint {t.get('fingerprint') or '-'}, "
                     f"refresh mode {st['refresh']['mode']}")
    if t.get("expires_at"):
        lines.append(f"          expires {t['expires_at']}; last refresh {t.get('last_refresh') or 'never (by this broker)'}")
    p = st["proxy"]
    if st["running"]:
        addrs = ", ".join(f"http://{a}" for a in p["listen"]) or "nowhere"
        lines.append(f"proxy:    {'PAUSED' if p['paused'] else 'serving'} on {addrs}; "
                     f"{p['requests_today']} request(s) today, {p['active_streams']} in flight")
    elif p["paused"]:
        lines.append("proxy:    access is paused (`inference-broker resume`)")
    lines.extend(limit_lines(st.get("limits") or {}))
    sbs = st["sandboxes"]
    lines.append(f"sandboxes: {len(sbs) or 'none — `inference-broker sandbox add NAME` issues a key'}")
    for s in sbs:
        lines.append(f"  {s['name']:<20} {s['requests']:>6} requests, last used {s['last_used'] or 'never'}")
    return "\n".join(lines)


def _local(iso_time: str | None) -> str | None:
    if not iso_time:
        return None
    return datetime.fromisoformat(iso_time).astimezone().strftime("%a %H:%M")


def limit_lines(limits: dict[str, Any]) -> list[str]:
    """"limits:   5-hour 62% · resets Thu 14:20, Weekly 31% · ..." from `limits.*` of the JSON."""
    windows = [(k, w) for k, w in limits.items() if isinstance(w, dict) and "utilization" in w]
    shown = []
    for _, w in windows:
        pct = "?" if w["utilization"] is None else f"{w['utilization']:.0f}%"
        reset = _local(w.get("resets_at"))
        shown.append(f"{w['label']} {pct}" + (f" · resets {reset}" if reset else ""))
    lines = []
    if shown:
        status = f" — {limits['status']}" if limits.get("status") else ""
        lines.append(f"limits:   {', '.join(shown)}{status}")
        lines.append(f"          as seen {_local(limits.get('seen_at'))} from the {limits.get('source')}")
    poll = limits.get("poll")
    if poll and poll != "on":
        lines.append(f"{'limits:' if not shown else '':<10}usage poll {poll}")
    return lines
