"""`inference-broker dashboard [--print]`: open the running broker's local dashboard.

The broker mints a one-time link (valid two minutes, for one visit) that the browser trades
for a session cookie; `--print` shows the link instead of opening a browser.
"""

from __future__ import annotations

import argparse
import sys
import webbrowser

from broker.cli.common import ask, config_of


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="open the local dashboard (limits, usage charts, sandboxes)")
    p.add_argument("--print", action="store_true", help="print the one-time link instead of opening a browser")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    url = ask(config_of(args), {"op": "dashboard_url"})["url"]
    if args.print or not webbrowser.open(url):
        print(url)
        if not args.print:
            print("no browser found: open the link above (it works once, for two minutes)", file=sys.stderr)
    return 0
