"""The broker from a network-namespace sandbox: curl, the anthropic SDK and the real Claude Code
CLI reach `inference.local` on the veth address and stream through the broker; the Claude
token never shows up inside; revoked keys and loopback-only brokers fail from inside."""

from __future__ import annotations

import os
import urllib.request
from pathlib import Path

import pytest

from tests.e2e.infra.broker import BrokerProcess, Upstream
from tests.e2e.infra.clients import CLAUDE_ENV, claude_print, curl_stream, sdk_stream, sse_events, sse_text
from tests.e2e.infra.netns import NetnsSandbox
from tests.support import require_tools

OAUTH_BETA = "oauth-2025-04-20"


@pytest.fixture
def veth_broker(netns_sandbox: NetnsSandbox, start_broker) -> BrokerProcess:
    """A broker on loopback and on the veth host address, both on free ports."""
    return start_broker(["127.0.0.1:0", f"{netns_sandbox.host_ip}:0"])


@pytest.fixture
def wiring(netns_sandbox: NetnsSandbox, veth_broker: BrokerProcess, tmp_path: Path) -> dict[str, str]:
    """The sandbox's whole environment: base URL, its key, a private HOME. Nothing else."""
    home = tmp_path / "sandbox-home"
    home.mkdir()
    return {
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": f"http://inference.local:{veth_broker.port_on(netns_sandbox.host_ip)}",
        "ANTHROPIC_API_KEY": veth_broker.add_sandbox("ns"),
    }


def _split_status(out: str) -> tuple[str, int]:
    body, _, status = out.rstrip("\n").rpartition("\n")
    return body, int(status)


def test_curl_head_and_stream(netns_sandbox: NetnsSandbox, wiring: dict[str, str], upstream: Upstream) -> None:
    require_tools("curl")
    head = netns_sandbox.run(["curl", "-sS", "-I", "--max-time", "5", wiring["ANTHROPIC_BASE_URL"] + "/"])
    assert head.returncode == 0 and head.stdout.startswith("HTTP/1.1 200"), head.stderr

    out = netns_sandbox.run(curl_stream(wiring["ANTHROPIC_BASE_URL"], wiring["ANTHROPIC_API_KEY"]), env=wiring)
    body, status = _split_status(out.stdout)
    assert out.returncode == 0 and status == 200, out.stderr
    assert sse_events(body)[-1] == "message_stop"
    assert sse_text(body) == upstream.fake.reply_text
    (seen,) = upstream.fake.requests
    assert seen.header("authorization") == [f"Bearer {upstream.access}"]
    assert upstream.fake.problems == []


def test_anthropic_sdk_streams(netns_sandbox: NetnsSandbox, wiring: dict[str, str], upstream: Upstream) -> None:
    out = netns_sandbox.run(sdk_stream(), env=wiring, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == upstream.fake.reply_text
    assert upstream.fake.requests[-1].header("authorization") == [f"Bearer {upstream.access}"]
    assert upstream.fake.problems == []


def _files_containing(root: Path, needle: bytes) -> list[str]:
    hits = []
    for dirpath, _, files in os.walk(root):
        for name in files:
            path = Path(dirpath) / name
            try:
                if needle in path.read_bytes():
                    hits.append(str(path))
            except OSError:
                continue
    return hits


def test_claude_code_gets_upstream_answer_and_never_the_token(
    netns_sandbox: NetnsSandbox, wiring: dict[str, str], upstream: Upstream, tmp_path: Path
) -> None:
    require_tools("claude")
    env = {**wiring, **CLAUDE_ENV}
    out = netns_sandbox.run(claude_print(), env=env, cwd=env["HOME"], timeout=120)
    assert out.returncode == 0, f"stdout={out.stdout!r} stderr={out.stderr!r}"
    assert upstream.fake.reply_text in out.stdout

    messages = [r for r in upstream.fake.requests if r.path == "/v1/messages"]
    assert messages, [r.path for r in upstream.fake.requests]
    for seen in messages:
        assert seen.header("authorization") == [f"Bearer {upstream.access}"]
        (beta,) = seen.header("anthropic-beta")  # one header, Claude Code's flags plus OAuth's
        flags = beta.split(",")
        assert OAUTH_BETA in flags and any(f.startswith("claude-code-") for f in flags)
    assert upstream.fake.problems == []  # includes: the sandbox key never went upstream

    token = upstream.access
    assert all(token not in v for v in {**netns_sandbox.env, **env}.values())
    assert token not in out.stdout + out.stderr
    assert _files_containing(Path(env["HOME"]), token.encode()) == []
    assert _files_containing(netns_sandbox.etc_dir, token.encode()) == []


def test_revoked_key_fails_from_inside(
    netns_sandbox: NetnsSandbox, veth_broker: BrokerProcess, wiring: dict[str, str], upstream: Upstream
) -> None:
    require_tools("curl")
    argv = curl_stream(wiring["ANTHROPIC_BASE_URL"], wiring["ANTHROPIC_API_KEY"])
    assert _split_status(netns_sandbox.run(argv).stdout)[1] == 200
    veth_broker.revoke("ns")
    body, status = _split_status(netns_sandbox.run(argv).stdout)
    assert status == 401 and "message_start" not in body
    assert len(upstream.fake.requests) == 1


def test_loopback_only_broker_is_unreachable_from_inside(
    netns_sandbox: NetnsSandbox, start_broker, upstream: Upstream
) -> None:
    require_tools("curl")
    broker = start_broker(["127.0.0.1:0"])
    port = broker.port_on("127.0.0.1")
    key = broker.add_sandbox("ns")
    with urllib.request.urlopen(urllib.request.Request(f"http://127.0.0.1:{port}/", method="HEAD"),
                                timeout=5) as resp:
        assert resp.status == 200  # up, on the host's loopback
    for host in ("inference.local", "127.0.0.1"):
        out = netns_sandbox.run(curl_stream(f"http://{host}:{port}", key))
        assert out.returncode != 0, host
        assert _split_status(out.stdout)[1] == 0  # curl's code for "no HTTP response at all"
    assert upstream.fake.requests == []
