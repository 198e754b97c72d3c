"""Audit and log files on disk: 0600 after every rotation, the state dir tightened to 0700,
and no sandbox able to flush the others' audit entries."""

from __future__ import annotations

import json
import logging
import os
import stat
from pathlib import Path

import pytest

from broker.proxy.audit import AuditLog
from broker.common.private_files import PrivateRotatingHandler, private_dir

pytestmark = pytest.mark.integration


def mode(p: Path) -> int:
    return stat.S_IMODE(p.stat().st_mode)


@pytest.fixture
def loose_umask():
    old = os.umask(0o022)  # what a desktop session usually has
    yield
    os.umask(old)


def test_rotated_logs_are_born_0600(tmp_path: Path, loose_umask: None):
    log_file = tmp_path / "logs" / "broker.log"
    handler = PrivateRotatingHandler(log_file, max_bytes=200, backups=3)
    logger = logging.Logger("i9-rotation-test")
    logger.addHandler(handler)
    for i in range(50):  # junk requests force rollovers
        logger.warning("junk line %d %s", i, "x" * 50)
    handler.close()
    files = sorted(log_file.parent.iterdir())
    assert len(files) == 4  # broker.log + 3 backups
    assert {f.name: mode(f) for f in files} == {f.name: 0o600 for f in files}
    assert mode(log_file.parent) == 0o700


def test_an_existing_loose_state_dir_and_log_are_tightened(tmp_path: Path, loose_umask: None):
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    os.chmod(state, 0o755)
    (state / "audit.jsonl").write_text("")
    os.chmod(state / "audit.jsonl", 0o644)
    private_dir(state)
    assert mode(state) == 0o700
    audit = AuditLog(state / "audit.jsonl", max_bytes=300, backups=2)
    for i in range(20):
        audit.write({"sandbox": "a", "status": 200, "time": float(i)})
    audit.close()
    assert all(mode(f) == 0o600 for f in state.iterdir())


def test_one_sandbox_cannot_rotate_the_others_entries_away(tmp_path: Path):
    path = tmp_path / "audit.jsonl"
    audit = AuditLog(path, max_bytes=64 * 1024, backups=1, sandbox_bytes_per_hour=16 * 1024)
    audit.write({"sandbox": "victim", "method": "POST", "path": "/v1/messages", "status": 200, "time": 1.0})
    for i in range(7):  # the attack: a 12 MiB model string, seven times
        audit.write({"sandbox": "flood", "model": "m" * (12 * 1024 * 1024), "status": 400, "time": 2.0 + i})
    for i in range(5000):
        audit.write({"sandbox": "flood", "model": "x", "path": "/v1/messages", "status": 200, "time": 10.0 + i})
    audit.close()
    lines = [json.loads(line) for f in sorted(tmp_path.glob("audit.jsonl*")) for line in f.read_text().splitlines()]
    assert any(e["sandbox"] == "victim" for e in lines)
    assert max(len(json.dumps(e)) for e in lines) < 1024
    assert any("budget spent" in e.get("note", "") for e in lines)
