"""The usage ledger behind a real broker: requests from two sandboxes, read back by the
`usage` command; a locked ledger never fails a request."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sqlite3
from pathlib import Path

import yaml

from broker.cli import main as cli_main
from tests.integration.conftest import Broker
from tests.integration.test_proxy import call


def write_config(b: Broker, tmp_path: Path) -> Path:
    """A config file naming the test broker's state dir, so the CLI finds its socket and ledger."""
    path = tmp_path / "cli-config.yaml"
    path.write_text(yaml.safe_dump({"state_dir": str(b.state_dir)}))
    return path


async def cli(capsys, config: Path, *argv: str) -> str:
    capsys.readouterr()
    rc = await asyncio.to_thread(cli_main, ["--config", str(config), *argv])
    out = capsys.readouterr().out
    assert rc == 0, out
    return out


async def two_sandboxes(b: Broker) -> None:
    a, c = await b.add_sandbox("alpha"), await b.add_sandbox("beta")
    for key, body in ((a, None), (a, json.dumps({"model": "claude-sonnet-4-6", "max_tokens": 5, "stream": True,
                                                  "messages": [{"role": "user", "content": "hi"}]}).encode()),
                      (c, None)):
        status, _, _ = await call(b, key=key, body=body, headers={"User-Agent": "claude-cli/2.1.197 (external, cli)"})
        assert status == 200


async def test_usage_by_sandbox_model_and_day_agree_with_status(make_broker, tmp_path, capsys):
    b = await make_broker()
    await two_sandboxes(b)
    config = write_config(b, tmp_path)
    rows = {r["sandbox"]: r for r in json.loads(await cli(capsys, config, "usage", "--by", "sandbox", "--json"))["rows"]}
    assert set(rows) == {"alpha", "beta"}
    assert rows["alpha"]["requests"] == 2 and rows["beta"]["requests"] == 1
    assert rows["alpha"]["input_tokens"] == 22 and rows["beta"]["input_tokens"] == 11  # the fake's 11 each
    status = json.loads(await cli(capsys, config, "status", "--json"))
    for sb in status["sandboxes"]:
        assert sb["requests"] == rows[sb["name"]]["requests"]
        assert sb["input_tokens"] == rows[sb["name"]]["input_tokens"]
        assert sb["output_tokens"] == rows[sb["name"]]["output_tokens"]
    models = json.loads(await cli(capsys, config, "usage", "--by", "model", "--json"))["rows"]
    assert {m["model"]: m["requests"] for m in models} == {"claude-haiku-4-5": 2, "claude-sonnet-4-6": 1}
    table = list(csv.DictReader(io.StringIO(await cli(capsys, config, "usage", "--by", "day", "--csv"))))
    assert len(table) == 1 and table[0]["requests"] == "3"
    text = await cli(capsys, config, "usage", "--since", "1h")
    assert text.splitlines()[0].split()[:2] == ["sandbox", "requests"] and "alpha" in text
    with sqlite3.connect(b.state_dir / "usage.db") as db:
        clients = {r[0] for r in db.execute("SELECT DISTINCT client FROM requests")}
        statuses = {r[0] for r in db.execute("SELECT DISTINCT status FROM requests")}
    assert clients == {"claude-cli/2.1.197"} and statuses == {200}
    assert all(secret not in (b.state_dir / "usage.db").read_bytes().decode("latin-1")
               for secret in b.secrets().values())


async def test_a_locked_ledger_never_fails_a_request(make_broker, tmp_path, capsys):
    b = await make_broker()
    b.service.ledger.busy_timeout = 0.05  # the writer opens its connection on the first row
    key = await b.add_sandbox("locked")
    path = b.state_dir / "usage.db"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("PRAGMA journal_mode=WAL")
    holder.execute("BEGIN EXCLUSIVE")
    try:
        for _ in range(3):
            status, _, _ = await call(b, key=key)
            assert status == 200
        reply = await b.service.handle_control({"op": "usage_flush"})
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert reply["ledger"]["dropped"] >= 1 and "locked" in reply["ledger"]["last_error"]
    counted = (await b.service.handle_control({"op": "status"}))["status"]["usage_ledger"]
    assert counted["dropped"] == reply["ledger"]["dropped"] and counted["errors"] >= 1
    status, _, _ = await call(b, key=key)
    assert status == 200
    reply = await b.service.handle_control({"op": "usage_flush"})
    assert reply["ledger"]["written"] >= 1
    config = write_config(b, tmp_path)
    rows = json.loads(await cli(capsys, config, "usage", "--json"))["rows"]
    assert rows[0]["sandbox"] == "locked" and 1 <= rows[0]["requests"] <= 4
