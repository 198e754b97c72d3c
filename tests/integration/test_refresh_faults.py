"""The fault matrix: an exception, and a SIGKILL of the real broker process, at each step of a
refresh; then a restart. Nobody is signed out and no refresh token is ever sent twice.

The broker runs as `python -m tests.fakes.fault_launcher -m broker run --no-tray`, which arms
one step (`broker.common.fault_points`) to raise or to kill the process the first time it is
reached; the restart runs the plain `python -m broker`. The fake token endpoint counts every
spent refresh token presented again (`reused`).

One cell is left out, and it is the one no broker can cover: a SIGKILL after the endpoint's
answer arrived and before the write-ahead record is on disk (`answer received`). The endpoint
has spent the old refresh token by then and the new pair exists only in that process's memory.
An exception at that step is covered: the pair is already held in memory.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from broker.common import fault_points as fp
from broker.common.redact import fingerprint
from broker.login.claude_locks import HostLocks
from tests.fakes.broker_process import BrokerProcess
from tests.fakes.eventually import eventually
from tests.fakes.fault_launcher import ENV
from tests.fakes.login import UNKNOWN_FIELDS, write_login
from tests.fakes.threaded import serve_in_thread
from tests.fakes.token_endpoint import FakeTokenEndpoint
from tests.fakes.upstream import FakeAnthropic

pytestmark = pytest.mark.integration

LAUNCHER = ("-m", "tests.fakes.fault_launcher")
CELLS = [(step, action) for step in fp.STEPS for action in ("raise", "kill")
         if (step, action) != (fp.ANSWER_RECEIVED, "kill")]
PENDING = "pending-login.json"


def stored(creds: Path) -> dict:
    return json.loads(creds.read_text())


def written_back(broker: BrokerProcess) -> bool:
    """The store holds what the broker serves, and the broker says nothing is left to write."""
    token = broker.status()["token"]
    return (token.get("writeback_problem") is None
            and token["fingerprint"] == fingerprint(stored(broker.creds)["claudeAiOauth"]["accessToken"]))


def let_killed_locks_go_stale(creds: Path) -> None:
    """Time passes: the locks a killed broker held are untouched for longer than their stale
    time, as Claude Code (and a restarted broker) will find them (tests/integration/
    test_writeback_sigkill.py checks a killed holder leaves nothing fresher)."""
    locks = HostLocks(creds.parent)
    past = time.time() - 10 * locks.stale
    for lock in (*locks.refresh_locks(), locks.storage_lock()):
        if lock.path.exists():
            os.utime(lock.path, (past, past))


@pytest.mark.parametrize("step, action", CELLS, ids=[f"{a}-at-{s.replace(' ', '-')}" for s, a in CELLS])
def test_a_fault_at_any_step_of_a_refresh_signs_nobody_out_and_spends_no_token_twice(tmp_path, step, action):
    endpoint = FakeTokenEndpoint()
    broker = BrokerProcess(tmp_path / "broker", env_extra={ENV: f"{step}={action}"})
    fake = FakeAnthropic(valid_tokens=lambda: endpoint.valid_access, forbidden=lambda: broker.issued)
    access, refresh = endpoint.issue()
    write_login(broker.creds, access, refresh, time.time() + 8 * 3600)
    pending = broker.state_dir / PENDING
    with serve_in_thread(endpoint.make_app) as token_srv, serve_in_thread(fake.make_app) as upstream:
        broker.settings.update(upstream_url=str(upstream), token_url=f"{token_srv}/v1/oauth/token",
                               refresh={"request_timeout_seconds": 5, "backoff_initial_seconds": 0.5,
                                        "backoff_max_seconds": 2})
        try:
            broker.start(python=LAUNCHER)
            asked = broker.cli("refresh", timeout=60)
            if action == "kill":
                assert broker.proc is not None and broker.proc.wait(30) == -signal.SIGKILL, broker.output_text()[-2000:]
                let_killed_locks_go_stale(broker.creds)
            else:
                assert "unreadable reply" not in asked.stderr, asked.stderr
                # serving throughout (a refresh that failed before spending anything is retried)
                assert broker.status()["token"]["state"] in ("valid", "expiring", "refreshing")
                eventually(lambda: written_back(broker), 20, "the write-back retried after the fault")
                assert not pending.exists() and broker.stop() == 0
            broker.env_extra.pop(ENV)
            broker.start()  # the plain broker, restarted
            eventually(lambda: not pending.exists(), 20, "a saved pair written back after the restart")
            st = broker.status()["token"]
            doc = stored(broker.creds)
            held = doc["claudeAiOauth"]
            assert st["state"] == "valid", st
            assert st["fingerprint"] == fingerprint(held["accessToken"])  # broker and host agree
            assert endpoint.live_refresh == {held["refreshToken"]}  # the host's refresh token is the newest
            assert all(doc[k] == v for k, v in UNKNOWN_FIELDS.items())
            assert st.get("writeback_problem") is None
            # The host's Claude Code (or the broker) refreshes next: the stored token works once.
            broker.cli("refresh", check=True, timeout=60)
            assert endpoint.reused == 0 and endpoint.problems == []
            assert endpoint.live_refresh == {stored(broker.creds)["claudeAiOauth"]["refreshToken"]}
        finally:
            broker.stop()
    assert fake.problems == []
    out = broker.output_text()
    for secret in (*endpoint.spent_refresh, *endpoint.live_refresh, *endpoint.valid_access):
        assert secret not in out


def test_a_refresh_while_the_store_is_unreadable_then_sigkill_then_restart_signs_nobody_out(tmp_path):
    """The issue's "Done when": the host's store is a directory when the refresh writes back
    (the real file was swapped away), the broker is killed, and started again."""
    endpoint = FakeTokenEndpoint()
    broker = BrokerProcess(tmp_path / "broker")
    fake = FakeAnthropic(valid_tokens=lambda: endpoint.valid_access, forbidden=lambda: broker.issued)
    access, refresh = endpoint.issue()
    write_login(broker.creds, access, refresh, time.time() + 8 * 3600)
    original = broker.creds.read_bytes()
    pending = broker.state_dir / PENDING
    with serve_in_thread(endpoint.make_app) as token_srv, serve_in_thread(fake.make_app) as upstream:
        broker.settings.update(upstream_url=str(upstream), token_url=f"{token_srv}/v1/oauth/token",
                               refresh={"request_timeout_seconds": 5, "backoff_initial_seconds": 0.5,
                                        "backoff_max_seconds": 2})
        try:
            broker.start()
            broker.creds.unlink()
            broker.creds.mkdir()  # unreadable, unwritable
            said = broker.cli("refresh", check=True, timeout=60).stdout
            assert "the login could not be written back to" in said and "the broker holds the current login" in said
            assert pending.exists() and pending.stat().st_mode & 0o777 == 0o600
            assert broker.proc is not None
            broker.proc.kill()
            assert broker.proc.wait(10) == -signal.SIGKILL
            let_killed_locks_go_stale(broker.creds)
            broker.start()
            st = broker.status()["token"]
            assert st["state"] == "valid" and "could not be written back" in (st["writeback_problem"] or "")
            key = broker.add_sandbox("s")
            assert proxied(broker, key) == 200  # serving on the saved pair, store still unreadable
            broker.creds.rmdir()
            broker.creds.write_bytes(original)  # the old file back: its refresh token is spent
            eventually(lambda: not pending.exists(), 20, "the saved pair written back")
            held = stored(broker.creds)["claudeAiOauth"]
            assert endpoint.live_refresh == {held["refreshToken"]}
            assert broker.status()["token"]["fingerprint"] == fingerprint(held["accessToken"])
            broker.cli("refresh", check=True, timeout=60)
            assert endpoint.reused == 0 and endpoint.calls == 2 and endpoint.problems == []
            assert proxied(broker, key) == 200
        finally:
            broker.stop()
    assert fake.problems == []


def proxied(broker: BrokerProcess, key: str) -> int:
    import urllib.error
    import urllib.request

    req = urllib.request.Request(f"{broker.url}/v1/messages", method="POST", data=json.dumps(
        {"model": "claude-haiku-4-5", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}).encode(),
        headers={"x-api-key": key, "content-type": "application/json", "anthropic-version": "2023-06-01",
                 "Host": "inference.local"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code
