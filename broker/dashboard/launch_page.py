"""Hand the one-time dashboard link to a browser without putting it on a command line.

Every local user can read every process's command line (`/proc/*/cmdline`) and, on some
systems, its environment: a link passed to `xdg-open` or a browser as an argument can be
redeemed by someone polling them first. So the link goes into a small page, written 0600 in
the broker's private state dir, that sends the browser on to it at once; the browser is
given only that file's path. The page is rewritten on every open, and the link in it works
once, for two minutes.
"""

from __future__ import annotations

import json
from html import escape
from pathlib import Path

from broker.common.atomic_files import write_private

PAGE = "dashboard-link.html"


def redirect_page(url: str) -> bytes:
    """A page that goes on to `url` at once (meta refresh, script, and a link to click)."""
    shown = escape(url, quote=True)
    return (f'<!doctype html><html><head><meta charset="utf-8"><meta name="referrer" content="no-referrer">'
            f'<meta http-equiv="refresh" content="0;url={shown}"><title>inference-broker dashboard</title>'
            f'<script>location.replace({json.dumps(url)})</script></head>'
            f'<body><p><a href="{shown}">Open the inference-broker dashboard</a></p></body></html>\n').encode()


def write_launch_page(state_dir: Path, url: str) -> Path:
    """The private page that forwards to `url`; open this path, never the URL itself."""
    path = Path(state_dir) / PAGE
    write_private(path, redirect_page(url), follow=False)
    return path
