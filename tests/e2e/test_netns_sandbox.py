"""The network-namespace sandbox itself: `inference.local` is the veth host side, the host's
loopback is out of reach, and the real Claude Code CLI runs inside."""

from __future__ import annotations

import subprocess

from tests.e2e.infra.netns import NetnsSandbox, is_link_local
from tests.support import require_tools

CURL = ["curl", "-sS", "--max-time", "5"]


def test_addresses_are_link_local_and_paired(netns_sandbox: NetnsSandbox) -> None:
    assert is_link_local(netns_sandbox.host_ip) and is_link_local(netns_sandbox.sandbox_ip)
    out = netns_sandbox.run(["ip", "-4", "-o", "addr"])
    assert f"{netns_sandbox.sandbox_ip}/30" in out.stdout
    assert (netns_sandbox.etc_dir / "hosts").read_text().count("inference.local") == 1


def test_curl_reaches_server_on_veth_address(netns_sandbox: NetnsSandbox, serve) -> None:
    require_tools("curl")
    server = serve(netns_sandbox.host_ip, text="veth says hi")
    out = netns_sandbox.run([*CURL, f"http://inference.local:{server.port}/"])
    assert out.returncode == 0, out.stderr
    assert out.stdout == "veth says hi"
    assert server.hosts == [f"inference.local:{server.port}"]


def test_curl_cannot_reach_loopback_server(netns_sandbox: NetnsSandbox, serve) -> None:
    require_tools("curl")
    server = serve("127.0.0.1", text="loopback only")
    for url in (f"http://inference.local:{server.port}/", f"http://127.0.0.1:{server.port}/"):
        out = netns_sandbox.run([*CURL, url])
        assert out.returncode != 0 and out.stdout == "", url
    assert server.hosts == []


def test_claude_code_runs_in_netns(netns_sandbox: NetnsSandbox, tmp_path) -> None:
    require_tools("claude")
    out = netns_sandbox.run(["claude", "--version"], env={"HOME": str(tmp_path)}, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "Claude Code" in out.stdout


def test_run_passes_only_the_given_environment(netns_sandbox: NetnsSandbox) -> None:
    out = netns_sandbox.run(["env"], env={"MARKER": "1"})
    names = {line.split("=", 1)[0] for line in out.stdout.splitlines()}
    assert names <= {"PATH", "LANG", "MARKER"} and "MARKER" in names


def test_teardown_removes_everything() -> None:
    from tests.support import require_root

    require_root()
    require_tools("ip")
    box = NetnsSandbox.create()
    assert box.exists()
    box.close()
    box.close()  # twice is harmless
    assert not box.exists()
    assert not box.etc_dir.exists()
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    assert box.host_if not in links
