"""`inference-broker dashboard [--print]`: open the running broker's local dashboard.

The broker mints a one-time link (valid two minutes, for one visit) that the browser trades
for a session cookie; `--print` shows the link instead of opening a browser. The browser is
given a private page that forwards to the link, never the link: other local users can read
every command line.
"""

from __future__ import annotations

import argparse
import sys
import webbrowser

from broker.cli.common import ask, config_of
from broker.dashboard.launch_page import write_launch_page


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("dashboard", help="open the local dashboard (limits, usage charts, sandboxes)")
    p.add_argument("--print", action="store_true", help="print the one-time link instead of opening a browser")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    config = config_of(args)
    url = ask(config, {"op": "dashboard_url"})["url"]
    if args.print or not webbrowser.open(write_launch_page(config.state_dir, url).as_uri()):
        print(url)
        if not args.print:
            print("no browser found: open the link above (it works once, for two minutes)", file=sys.stderr)
    return 0
