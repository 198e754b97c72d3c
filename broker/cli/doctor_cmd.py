"""`inference-broker doctor [--sandbox NAME [--uid UID | --image IMAGE]]`: find problems and say how to fix them.

It exits 1 on any problem or warning, so a script (or a person reading `$?`) sees trouble."""

from __future__ import annotations

import argparse
import time

from broker.cli.common import config_of
from broker.config.files import profile_for
from broker.cli.doctor_checks import PROBLEM, WARN, as_json, run_checks
from broker.common.errors import BrokerError
from broker.login.source_setup import build_sources

MARK = {"ok": "ok  ", WARN: "WARN", PROBLEM: "FAIL"}


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("doctor", help="check the login, file modes and sandbox wiring")
    p.add_argument("--sandbox", metavar="NAME", help="also check that sandbox NAME can get through")
    p.add_argument("--uid", type=int, metavar="UID",
                   help="with --sandbox: the user its container runs as (e.g. 1000 for `node` images)")
    p.add_argument("--image", metavar="IMAGE",
                   help="with --sandbox: the docker image it runs (doctor looks up the user it runs as)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=main)


def main(args: argparse.Namespace) -> int:
    config = config_of(args)
    profile = profile_for(config)
    if (args.uid is not None or args.image) and not args.sandbox:
        raise BrokerError("--uid and --image go with --sandbox NAME", title="doctor")
    if args.uid is not None and args.image:
        raise BrokerError("give --uid or --image, not both", title="doctor")
    findings = run_checks(config, profile, build_sources(config, profile), time.time(), args.sandbox, args.uid,
                          args.image)
    if args.json:
        print(as_json(findings))
    else:
        for f in findings:
            print(f"[{MARK[f.level]}] {f.what}" + (f"\n       fix: {f.fix}" if f.fix else ""))
    problems = sum(f.level == PROBLEM for f in findings)
    warnings = sum(f.level == WARN for f in findings)
    if not args.json:
        said = [f"{problems} problem(s)"] * bool(problems) + [f"{warnings} warning(s)"] * bool(warnings)
        print("\n" + (", ".join(said) if said else "no problems found"))
    return 1 if problems or warnings else 0
