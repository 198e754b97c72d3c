"""The broker as a user runs it: `python -m broker run --no-tray` in its own process.

The fakes run in server threads (the broker is another process, the SDK client blocks);
the test drives the broker only through what a user has: a config file, the CLI, the
credentials file Claude Code writes, signals, and HTTP.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import os
import signal
import stat
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anthropic
import pytest

from broker.runtime import control_socket
from broker.common.redact import fingerprint
from tests.fakes.broker_process import BrokerProcess
from tests.fakes.eventually import eventually
from tests.fakes.login import write_login
from tests.fakes.threaded import ServerURL, serve_in_thread
from tests.fakes.token_endpoint import FakeTokenEndpoint
from tests.fakes.upstream import OAUTH_BETA, FakeAnthropic
from tests.integration.conftest import RecordingTransport, Seen, httpx

MODEL = "claude-haiku-4-5"
REPLY = "Hello from the fake upstream"
REQUEST = {"model": MODEL, "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


def audit_lines(r: "Running", count: int) -> list[dict[str, Any]]:
    """The audit log once it has `count` lines (each is written just after its response ends)."""
    path = r.state / "audit.jsonl"
    eventually(lambda: path.exists() and len(path.read_text().splitlines()) >= count, 5, f"{count} audit lines")
    return [json.loads(line) for line in path.read_text().splitlines()]


@dataclass
class Running:
    """A broker process with its fakes, its files, and everything its clients were shown."""

    broker: BrokerProcess
    endpoint: FakeTokenEndpoint
    fake: FakeAnthropic
    upstream: ServerURL
    seen: Seen = field(default_factory=Seen)

    @property
    def proc(self) -> subprocess.Popen:
        assert self.broker.proc is not None
        return self.broker.proc

    @property
    def state(self) -> Path:
        return self.broker.state_dir

    @property
    def creds(self) -> Path:
        return self.broker.creds

    @property
    def output(self) -> Path:
        return self.broker.output

    @property
    def port(self) -> int:
        return self.broker.port

    @property
    def url(self) -> str:
        return self.broker.url

    @property
    def keys(self) -> list[str]:
        return self.broker.issued

    def cli(self, *args: str, ok: bool = True, record: bool = True) -> subprocess.CompletedProcess:
        """`inference-broker ARGS` as a user types it (the config comes from the environment)."""
        done = self.broker.cli(*args, check=ok)
        if record:
            self.seen.add(done.stdout)
        self.seen.add(done.stderr)
        return done

    def sandbox_add(self, name: str) -> str:
        key = self.cli("sandbox", "add", name, record=False).stdout.strip()  # shown once, by design
        assert key.startswith("sk-ib-")
        self.keys.append(key)
        return key

    def status(self) -> dict[str, Any]:
        return json.loads(self.cli("status", "--json").stdout)

    def sdk(self, key: str) -> anthropic.Anthropic:
        return anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, timeout=10,
                                   http_client=httpx.Client(transport=RecordingTransport(self.seen)))

    def secrets(self) -> list[str]:
        return [*self.keys, *self.endpoint.valid_access, *self.endpoint.live_refresh, *self.endpoint.spent_refresh]


@pytest.fixture
def running(tmp_path: Path) -> Iterator[Running]:
    endpoint = FakeTokenEndpoint()
    broker = BrokerProcess(tmp_path / "broker")
    fake = FakeAnthropic(valid_tokens=lambda: endpoint.valid_access, forbidden=lambda: broker.issued)
    access, refresh = endpoint.issue()
    write_login(broker.creds, access, refresh, time.time() + 8 * 3600)
    with serve_in_thread(endpoint.make_app) as token_srv, serve_in_thread(fake.make_app) as upstream:
        broker.settings.update(upstream_url=str(upstream), token_url=f"{token_srv}/v1/oauth/token",
                               proxy={"connect_timeout_seconds": 5})
        try:
            broker.start()
            yield Running(broker, endpoint, fake, upstream)
        finally:
            if fake.gate is not None:
                upstream.call(fake.gate.set)
            broker.stop()
    assert endpoint.problems == [], endpoint.problems


def test_sandbox_streams_through_a_running_broker(running: Running):
    """The issue's "Done when": `sandbox add demo`, then the SDK streams a reply through `run`."""
    r = running
    key = r.sandbox_add("demo")
    with r.sdk(key) as client:
        with client.messages.stream(**REQUEST) as stream:
            assert "".join(stream.text_stream) == REPLY
        assert client.messages.create(**REQUEST).content[0].text == REPLY
    first_token = json.loads(r.creds.read_text())["claudeAiOauth"]["accessToken"]
    assert [rec.header("authorization") for rec in r.fake.requests] == [[f"Bearer {first_token}"]] * 2
    assert all(rec.header("anthropic-beta") == [OAUTH_BETA] for rec in r.fake.requests)

    audit_lines(r, 2)
    st = r.status()
    assert st["running"] is True
    tok = st["token"]
    assert tok["state"] == "valid"
    assert datetime.fromisoformat(tok["expires_at"]).tzinfo is not None
    assert tok["source"] == f"file:{r.creds}"
    assert tok["fingerprint"] == fingerprint(first_token)
    assert st["refresh"]["mode"] == "own"
    assert st["listen"] == [f"127.0.0.1:{r.port}"]
    (demo,) = st["sandboxes"]
    assert (demo["name"], demo["requests"], demo["input_tokens"], demo["output_tokens"]) == ("demo", 2, 22, 10)

    # The host's Claude Code rotates its login (temp file + rename): the broker adopts it.
    new_access, new_refresh = r.endpoint.issue()
    write_login(r.creds, new_access, new_refresh, time.time() + 8 * 3600)
    sock = r.state / "broker.sock"
    eventually(lambda: control_socket.request(sock, {"op": "status"})["status"]["token"]["fingerprint"]
             == fingerprint(new_access), 5, "rotated login adopted")
    assert r.status()["token"]["fingerprint"] == fingerprint(new_access)
    with r.sdk(key) as client:
        assert client.messages.create(**REQUEST).content[0].text == REPLY
    assert r.fake.requests[-1].header("authorization") == [f"Bearer {new_access}"]
    assert r.endpoint.calls == 0  # adopted, not refreshed
    assert r.fake.problems == []

    for name in ("broker.db", "audit.jsonl", "listen.json", "broker.log", "refresh-events.jsonl"):
        assert stat.S_IMODE(os.stat(r.state / name).st_mode) == 0o600, name
    audit = audit_lines(r, 3)
    assert [(a["sandbox"], a["status"], a["model"], a["output_tokens"]) for a in audit] == [("demo", 200, MODEL, 5)] * 3

    listed = json.loads(r.cli("sandbox", "list", "--json").stdout)
    assert [(s["name"], s["requests"], s["input_tokens"], s["output_tokens"]) for s in listed] == [("demo", 3, 33, 15)]
    used = json.loads(r.cli("usage", "--by", "sandbox", "--json").stdout)["rows"]
    assert [(u["sandbox"], u["requests"], u["input_tokens"], u["output_tokens"]) for u in used] == [("demo", 3, 33, 15)]
    assert stat.S_IMODE(os.stat(r.state / "usage.db").st_mode) == 0o600
    link = urlsplit(r.cli("dashboard", "--print").stdout.strip())  # the real process's dashboard
    assert link.hostname == "127.0.0.1" and link.path == "/login"
    conn = http.client.HTTPConnection(link.hostname, link.port, timeout=10)
    conn.request("GET", f"{link.path}?{link.query}")
    reply = conn.getresponse()
    assert reply.status == 303 and "HttpOnly" in reply.getheader("Set-Cookie", "")
    conn.close()

    r.proc.send_signal(signal.SIGTERM)
    assert r.proc.wait(10) == 0
    assert not sock.exists() and not (r.state / "listen.json").exists()
    # Usage counters were saved on the way out: the key store alone still has them.
    listed = json.loads(r.cli("sandbox", "list", "--json").stdout)
    assert [(s["name"], s["requests"]) for s in listed] == [("demo", 3)]
    assert r.status()["running"] is False
    assert_no_secrets(r)


def test_cli_revoke_pause_and_resume_reach_open_streams(running: Running):
    r = running
    key = r.sandbox_add("demo")
    other = r.sandbox_add("other")
    gate = r.fake.gate = asyncio.Event()  # bound to the server loop on first wait
    with r.sdk(key) as client:
        with client.messages.stream(**REQUEST) as stream:
            events = iter(stream)
            assert next(e for e in events if e.type == "content_block_delta").delta.text == "Hello "
            assert r.cli("sandbox", "revoke", "demo").stdout.strip() == "revoked demo"
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in events:
                    pass
        with pytest.raises(anthropic.AuthenticationError):
            client.messages.create(**REQUEST)

    with r.sdk(other) as client:
        with client.messages.stream(**REQUEST) as stream:
            events = iter(stream)
            next(e for e in events if e.type == "content_block_delta")
            r.cli("pause")
            with pytest.raises(httpx.RemoteProtocolError):
                for _ in events:
                    pass
        with pytest.raises(anthropic.PermissionDeniedError):
            client.messages.create(**REQUEST)
        assert r.status()["proxy"]["paused"] is True
        r.cli("resume")
        r.upstream.call(gate.set)
        assert client.messages.create(**REQUEST).content[0].text == REPLY
    eventually(lambda: r.fake.streams_cancelled == 2, 5, "upstream streams cancelled")
    assert [s["name"] for s in r.status()["sandboxes"]] == ["other"]
    assert r.fake.problems == []
    r.proc.send_signal(signal.SIGTERM)
    assert r.proc.wait(10) == 0
    assert_no_secrets(r)


def assert_no_secrets(r: Running) -> None:
    """No token or key in the broker's stderr, its files, or anything a client was shown."""
    places = {"client-visible output": r.seen.text(), "broker stderr": r.output.read_text()}
    for path in r.state.iterdir():
        if path.is_file():
            places[path.name] = path.read_bytes().decode("utf-8", "replace")
    assert {"broker.log", "audit.jsonl", "refresh-events.jsonl", "broker.db"} <= set(places)
    assert "listening on" in places["broker.log"]
    secrets = r.secrets()
    assert len(secrets) >= 3
    for where, text in places.items():
        for i, secret in enumerate(secrets):
            assert secret not in text, f"secret #{i} ({secret[:9]}...) appears in {where}"


def _stored(creds: Path) -> dict[str, Any]:
    return json.loads(creds.read_text())


def test_refresh_command_rotates_and_writes_back(running: Running) -> None:
    before = _stored(running.creds)["claudeAiOauth"]
    out = running.cli("refresh")
    assert out.stdout.startswith("token:") and "valid" in out.stdout
    after = _stored(running.creds)
    oauth = after["claudeAiOauth"]
    assert running.endpoint.calls == 1
    assert oauth["accessToken"] != before["accessToken"] and oauth["accessToken"] in running.endpoint.valid_access
    assert oauth["refreshToken"] in running.endpoint.live_refresh  # the host's Claude Code can use it next
    assert stat.S_IMODE(os.stat(running.creds).st_mode) == 0o600
    assert after["mcpOAuth"] and after["organizationUuid"] == "org-uuid-1" and oauth["somethingNew"] is True
    tok = running.status()["token"]
    assert tok["fingerprint"] == fingerprint(oauth["accessToken"]) and tok["last_refresh"]
    log = running.state / "refresh-events.jsonl"  # written by its own thread, just after the refresh
    eventually(lambda: log.exists() and "manual" in log.read_text(), what="the refresh event")
    events = [json.loads(x) for x in log.read_text().splitlines()]
    assert events[-1]["outcome"] == "refreshed" and events[-1]["trigger"] == "manual"


def test_a_login_near_expiry_is_refreshed_on_schedule_and_written_back(running: Running) -> None:
    access, refresh = running.endpoint.issue()
    write_login(running.creds, access, refresh, time.time() + 120)  # the host logs in; 2 min left
    eventually(lambda: running.endpoint.calls == 1, 10, "a scheduled refresh")
    eventually(lambda: _stored(running.creds)["claudeAiOauth"]["accessToken"] not in (access,), 5, "write-back")
    oauth = _stored(running.creds)["claudeAiOauth"]
    assert oauth["accessToken"] in running.endpoint.valid_access
    assert oauth["expiresAt"] > (time.time() + 7 * 3600) * 1000
    assert refresh in running.endpoint.spent_refresh and oauth["refreshToken"] in running.endpoint.live_refresh


def test_a_second_run_says_one_is_running_and_exits(running: Running) -> None:
    second = running.cli("run", "--no-tray", ok=False)
    assert second.returncode == 1 and "already running" in second.stderr
    assert running.proc.poll() is None and control_socket.is_running(running.state / "broker.sock")


def test_a_port_in_use_is_a_clear_error(running: Running, tmp_path: Path) -> None:
    other = BrokerProcess(tmp_path / "other", {"listen": [f"127.0.0.1:{running.port}"], "credentials": {
        "sources": ["file"], "file": str(running.creds)}}, config_flag=True)
    done = other.cli("run", "--no-tray")
    assert done.returncode == 1
    assert f"cannot listen on 127.0.0.1:{running.port}" in done.stderr and "Traceback" not in done.stderr
