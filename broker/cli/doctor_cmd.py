"""`inference-broker doctor [--sandbox NAME]`: find problems and say how to fix them."""

from __future__ import annotations

import argparse
import time

from broker.cli.common import config_of
from broker.config.files import profile_for
from broker.cli.doctor_checks import PROBLEM, WARN, as_json, run_checks
from broker.login.source_setup import build_sources

MARK = {"ok": "ok  ", WARN: "WARN", PROBLEM: "FAIL"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check the login, file modes and sandbox wiring")
    p.add_argument("--sandbox", metavar="NAME", help="also check that sandbox NAME can get through")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    config = config_of(args)
    profile = profile_for(config)
    findings = run_checks(config, profile, build_sources(config, profile), time.time(), args.sandbox)
    if args.json:
        print(as_json(findings))
    else:
        for f in findings:
            print(f"[{MARK[f.level]}] {f.what}" + (f"\n       fix: {f.fix}" if f.fix else ""))
    problems = sum(f.level == PROBLEM for f in findings)
    if not args.json:
        print(f"\n{problems} problem(s)" if problems else "\nno problems found")
    return 1 if problems else 0
