"""`inference-broker refresh`: refresh the token now, in the running broker."""

from __future__ import annotations

import argparse

from broker.cli.common import ask, config_of
from broker.cli.status_cmd import token_line


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("refresh", help="refresh the subscription token now")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    reply = ask(config_of(args), {"op": "perform", "action": "refresh"}, timeout=120)
    token = reply["status"]["token"]
    print(token_line(token))
    return 0 if token["state"] in ("valid", "expiring") else 1
