"""`inference-broker usage [--since 7d] [--by sandbox|model|day|client] [--json|--csv]`.

Reads the ledger straight from `state_dir` (WAL: the running broker keeps writing), after
asking a running broker to write out what it still holds, so the numbers include the request
that just finished.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
import time
from typing import Any

from broker.usage import ledger_query
from broker.cli.common import ask_or_none, config_of
from broker.usage.report import BY, parse_span
from broker.common.untrusted_text import for_csv, for_terminal

FIELDS = ("requests", "input_tokens", "output_tokens", "cache_creation_tokens", "cache_read_tokens",
          "total_tokens", "errors")


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("usage", help="tokens and requests per sandbox, model, day or client, from the ledger")
    p.add_argument("--since", default="7d", help="how far back: 90m, 5h, 7d, 2w (default 7d)")
    p.add_argument("--by", default="sandbox", choices=BY, help="group rows by (default sandbox)")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--json", action="store_true", help="machine-readable output")
    out.add_argument("--csv", action="store_true", help="CSV with a header row")
    p.set_defaults(func=main)


def report(rows: list[dict[str, Any]], by: str, since: float, fmt: str) -> str:
    """Rows as JSON (names JSON-escaped), CSV (no cell a spreadsheet runs as a formula) or a
    table (controls shown escaped): a model or client is whatever a sandbox sent."""
    if fmt == "json":
        return json.dumps({"since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(since)), "by": by,
                           "rows": rows}, indent=2)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=(by, *FIELDS), extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows({**r, by: for_csv(str(r[by]))} for r in rows)  # a sandbox named it
        return buf.getvalue().rstrip("\n")
    if not rows:
        return "no requests in that time"
    head = f"{by + (' (UTC)' if by == 'day' else ''):<28} {'requests':>9} {'input':>10} {'output':>10} " \
           f"{'cache write':>12} {'cache read':>12} {'errors':>7}"
    lines = [head]
    for r in rows:
        lines.append(f"{for_terminal(str(r[by]))[:28]:<28} {r['requests']:>9} {r['input_tokens']:>10} {r['output_tokens']:>10} "
                     f"{r['cache_creation_tokens']:>12} {r['cache_read_tokens']:>12} {r['errors']:>7}")
    return "\n".join(lines)


def main(args: argparse.Namespace) -> int:
    config = config_of(args)
    since = time.time() - parse_span(args.since)
    reply = ask_or_none(config, {"op": "usage_flush"})
    if reply is not None and reply["ledger"]["dropped"]:
        print(f"note: {reply['ledger']['dropped']} request(s) could not be recorded "
              f"({reply['ledger']['last_error']})", file=sys.stderr)
    if not config.ledger_path.exists():
        rows: list[dict[str, Any]] = []
    else:
        rows = ledger_query.totals(config.ledger_path, since, args.by)
    print(report(rows, args.by, since, "json" if args.json else "csv" if args.csv else "text"))
    return 0
