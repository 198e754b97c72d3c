"""The dashboard page: one server-rendered HTML document, escaped throughout.

It shows what `status` shows plus the ledger's charts: token state and expiry, plan-limit
gauges, tokens per sandbox and per model over 24 h / 7 d / 30 d, the sandboxes with Revoke and
budget controls, and the last refresh events. It never holds a token or a key: the snapshot
carries fingerprints only, and the tests search the page for every secret.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from html import escape
from typing import Any

from broker.usage.plan_limits import LABELS
from broker.status.words import plan_words, proxy_words, token_words
from broker.status.snapshot import Snapshot
from broker.dashboard.svg import PALETTE, gauge, stacked_bars

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:0 auto;max-width:980px;padding:16px;color:#222}
h1{font-size:22px;margin:0 0 4px}h2{font-size:17px;margin:24px 0 8px;border-bottom:1px solid #ddd}
h3{font-size:14px;margin:14px 0 4px}table{border-collapse:collapse;width:100%}
td,th{text-align:left;padding:4px 8px;border-bottom:1px solid #eee;font-variant-numeric:tabular-nums}
th{font-weight:600;color:#555}.num{text-align:right}.muted{color:#777}.warn{color:#b45309}.bad{color:#b91c1c}
.gauges{display:flex;flex-wrap:wrap;gap:20px}.gl,.gv{font:600 12px system-ui}.gc,.axis{font:11px system-ui;fill:#666}
nav a{margin-right:10px}nav a.on{font-weight:700;text-decoration:none;color:#222}
.swatch{display:inline-block;width:10px;height:10px;margin-right:6px;border-radius:2px}
form{display:inline}input[type=text]{width:7em}button{cursor:pointer}.problem{background:#fee;padding:8px}
""" + "".join(f".c{i}{{background:{c}}}" for i, c in enumerate(PALETTE))


@dataclass
class PageData:
    snapshot: Snapshot
    range: str
    since: float
    bucket: float
    buckets: int
    by_sandbox: list[tuple[float, str, int]]
    by_model: list[tuple[float, str, int]]
    totals_sandbox: list[dict[str, Any]]
    totals_model: list[dict[str, Any]]
    events: list[dict[str, Any]]
    ledger: dict[str, Any]
    csrf: str
    problem: str | None = None


def _e(value: Any) -> str:
    return escape("" if value is None else str(value))


def _local(ts: float | None) -> str:
    return "—" if ts is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(ts))


def _form(action: str, d: PageData, fields: str, button: str, label: str) -> str:
    return (f'<form method="post" action="/action/{action}"><input type="hidden" name="csrf" value="{_e(d.csrf)}">'
            f'<input type="hidden" name="range" value="{_e(d.range)}">{fields}'
            f'<button type="submit" aria-label="{_e(label)}">{_e(button)}</button></form>')


def header(d: PageData) -> str:
    s = d.snapshot
    t = s.token
    cls = "bad" if t.state in ("signed_out", "expired") else "warn" if t.state == "expiring" else ""
    expiry = f" — expires {_local(t.expires_at)}" if t.expires_at else ""
    source = f"{_e(t.source)}, fingerprint {_e(t.fingerprint)}, " if t.source else ""
    return (f'<header><h1>inference-broker</h1><p id="token" class="{cls}" data-state="{_e(t.state)}">'
            f'{_e(plan_words(t, s.plan_label))}: {_e(token_words(t, s.now, s.login_hint))}{_e(expiry)}</p>'
            f'<p class="muted">{source}refresh mode {_e(t.mode)}; last refresh '
            f'{_local(t.last_refresh) if t.last_refresh else "never (by this broker)"}. '
            f'{_e(proxy_words(s))}</p></header>')


def limits(d: PageData) -> str:
    lim = d.snapshot.limits
    out = ['<section id="limits"><h2>Plan limits</h2>']
    if lim is None or not lim.windows:
        out.append('<p class="muted">Not known yet: they arrive with the first API reply, or from the usage '
                   f'endpoint (poll: {_e(d.snapshot.limits_poll)}).</p>')
    else:
        order = list(LABELS)
        gauges = []
        for w in sorted(lim.windows, key=lambda w: order.index(w.name) if w.name in order else 99):
            caption = f"resets {_local(w.resets_at)}" if w.resets_at else "reset time unknown"
            gauges.append(f'<div class="window" data-window="{_e(w.name)}" data-percent="{_e(w.percent)}">'
                          f'{gauge(w.label, w.percent, caption)}</div>')
        out.append(f'<div class="gauges">{"".join(gauges)}</div>')
        status = f"status {_e(lim.status)}; " if lim.status else ""
        out.append(f'<p class="muted">{status}as seen {_local(lim.seen_at)} from the {_e(lim.source)}; '
                   f'usage poll {_e(d.snapshot.limits_poll)}.</p>')
    out.append(_form("poll", d, "", "Check now", "Ask the plan's usage endpoint now") + "</section>")
    return "".join(out)


def _chart(title: str, by: str, series: list, totals: list[dict[str, Any]], d: PageData) -> str:
    svg, groups = stacked_bars(series, d.since, d.bucket, d.buckets, title)
    rows = []
    for r in totals:
        i = groups.index(r[by]) if r[by] in groups else -1
        swatch = f'<span class="swatch c{i % len(PALETTE)}"></span>' if i >= 0 else ""
        rows.append(f'<tr data-{by}="{_e(r[by])}"><td>{swatch}{_e(r[by])}</td><td class="num requests">'
                    f'{r["requests"]}</td><td class="num input">{r["input_tokens"]}</td><td class="num output">'
                    f'{r["output_tokens"]}</td><td class="num cache">{r["cache_creation_tokens"]} / '
                    f'{r["cache_read_tokens"]}</td><td class="num errors">{r["errors"]}</td></tr>')
    table = ("<table><tr><th>" + by + "</th><th class=num>requests</th><th class=num>input</th><th class=num>"
             "output</th><th class=num>cache write / read</th><th class=num>errors</th></tr>" + "".join(rows)
             + "</table>") if rows else '<p class="muted">No requests in this range.</p>'
    return f'<div id="by-{by}"><h3>{_e(title)}</h3>{svg}{table}</div>'


def usage(d: PageData) -> str:
    nav = "".join(f'<a href="/?range={r}" class="{"on" if r == d.range else ""}">{r}</a>' for r in ("24h", "7d", "30d"))
    return (f'<section id="usage"><h2>Usage</h2><nav>{nav}</nav>'
            f'{_chart("Tokens per sandbox", "sandbox", d.by_sandbox, d.totals_sandbox, d)}'
            f'{_chart("Tokens per model", "model", d.by_model, d.totals_model, d)}</section>')


def sandboxes(d: PageData) -> str:
    s = d.snapshot
    if not s.sandboxes:
        return ('<section id="sandboxes"><h2>Sandboxes</h2><p class="muted">None yet: '
                '<code>inference-broker sandbox add NAME</code> issues a key.</p></section>')
    rows = []
    for sb in s.sandboxes:
        budget = f"{sb.budget_used or 0} of {sb.budget}" if sb.budget else "none"
        name_field = f'<input type="hidden" name="name" value="{_e(sb.name)}">'
        budget_field = (f'{name_field}<input type="text" name="budget" placeholder="2M/5h or off" '
                        f'aria-label="budget for {_e(sb.name)}">')
        rows.append(f'<tr data-sandbox="{_e(sb.name)}"><td>{_e(sb.name)}</td><td>{_local(sb.created)}</td>'
                    f'<td>{_local(sb.last_used)}</td><td class="num">{sb.requests}</td><td class="num">'
                    f'{sb.input_tokens} / {sb.output_tokens}</td><td class="budget">{_e(budget)}</td><td>'
                    f'{_form("budget", d, budget_field, "Set", f"Set budget for {sb.name}")} '
                    f'{_form("revoke", d, name_field, "Revoke", f"Revoke {sb.name}")}</td></tr>')
    return ('<section id="sandboxes"><h2>Sandboxes</h2><table><tr><th>name</th><th>created</th><th>last used'
            '</th><th class=num>requests</th><th class=num>in / out tokens</th><th>budget</th><th></th></tr>'
            + "".join(rows) + "</table></section>")


def events(d: PageData) -> str:
    if not d.events:
        return '<section id="refreshes"><h2>Recent refresh events</h2><p class="muted">None yet.</p></section>'
    rows = "".join(f'<tr><td>{_e(e.get("time"))}</td><td>{_e(e.get("trigger"))}</td><td>{_e(e.get("outcome"))}'
                   f'</td><td class="muted">{_e(e.get("detail", ""))}</td></tr>' for e in d.events)
    return ('<section id="refreshes"><h2>Recent refresh events</h2><table><tr><th>time (UTC)</th><th>trigger</th>'
            f'<th>outcome</th><th>detail</th></tr>{rows}</table></section>')


def render(d: PageData) -> str:
    led = d.ledger
    lost = f', <span class="warn">{led["dropped"]} lost ({_e(led["last_error"])})</span>' if led["dropped"] else ""
    problem = f'<p class="problem">{_e(d.problem)}</p>' if d.problem else ""
    return ('<!doctype html><html lang="en"><head><meta charset="utf-8"><meta http-equiv="refresh" content="30">'
            '<title>inference-broker</title><link rel="stylesheet" href="/style.css"></head><body>'
            f'{header(d)}{problem}{limits(d)}{usage(d)}{sandboxes(d)}{events(d)}'
            f'<footer class="muted"><p>Usage ledger: {led["written"]} request(s) recorded this run{lost}. '
            f'Version {_e(d.snapshot.version)}.</p></footer></body></html>')
