"""Rootless podman as a plain user (Debian 12's 4.3.1, slirp4netns), with the broker running as
that user, as on a Fedora or RHEL desktop. No bridge on the host: the container reaches the
broker on the host's 127.0.0.1 through slirp4netns (`allow_host_loopback`, as 10.0.2.2), and the
image's user (uid 1000) gets the sandbox's dir through `--userns keep-id:uid=1000,gid=1000`.
"""

from __future__ import annotations

import shlex
import sys
import tempfile
from pathlib import Path

import pytest

from tests.e2e.infra.broker import BrokerProcess, Upstream
from tests.e2e.infra.clients import BODY, CLAUDE_ENV, WGET_STREAM, claude_print, sse_text
from tests.e2e.infra.podman import Podman, as_user_python, chown_tree


@pytest.fixture
def user_broker(rootless_podman: Podman, upstream: Upstream):
    root = Path(tempfile.mkdtemp(prefix="ib-rootless-", dir="/tmp"))
    root.chmod(0o755)
    env = {k: rootless_podman.env[k] for k in ("XDG_RUNTIME_DIR", "CONTAINERS_CONF")}
    env["XDG_DATA_HOME"] = f"{rootless_podman.env['HOME']}/.local/share"  # the user's image store
    broker = BrokerProcess(root / "b", None, upstream.url, upstream.token_url, upstream.access, upstream.refresh,
                           issued=upstream.sandbox_keys, env=env)
    broker.executable = as_user_python(rootless_podman, root, sys.executable)
    broker.prepare = lambda: chown_tree(root / "b", rootless_podman.user or "root")  # type: ignore[method-assign]
    broker.start()
    try:
        yield broker
    finally:
        broker.stop()
        import shutil

        shutil.rmtree(root, ignore_errors=True)


def test_exec_rootless_podman_streams_through_host_loopback(rootless_podman: Podman, user_broker: BrokerProcess,
                                                            upstream: Upstream) -> None:
    image = rootless_podman.probe_image()
    out = user_broker.cli("exec", "rl", "--", "podman", "run", "--rm", "-e", f"BODY={BODY}", image, "sh", "-c",
                          WGET_STREAM, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert sse_text(out.stdout) == upstream.fake.reply_text
    assert upstream.fake.problems == []


def test_claude_code_in_rootless_podman_via_docker_args(rootless_podman: Podman, user_broker: BrokerProcess,
                                                        upstream: Upstream) -> None:
    """The issue's line for rootless podman: the image runs as uid 1000, the broker as the user."""
    image = rootless_podman.claude_image()
    out = user_broker.cli("docker-args", "rlc", "--new", "--uid", "1000", "--engine", "podman")
    assert out.returncode == 0, out.stderr
    flags = shlex.split(out.stdout)
    assert flags[:6] == ["--add-host", "inference.local:10.0.2.2", "--network", "slirp4netns:allow_host_loopback=true",
                         "--userns", "keep-id:uid=1000,gid=1000"]
    env = [f for k, v in CLAUDE_ENV.items() for f in ("-e", f"{k}={v}")]
    result = rootless_podman.run(image, claude_print(), flags=[*flags, *env], timeout=120)
    assert result.returncode == 0, f"stdout={result.stdout!r} stderr={result.stderr!r}"
    assert upstream.fake.reply_text in result.stdout
    assert user_broker.sandbox_dir("rlc").stat().st_uid == rootless_podman.uid  # never chowned away


def test_sandbox_check_passes_rootless(rootless_podman: Podman, user_broker: BrokerProcess) -> None:
    image = rootless_podman.probe_image()
    user_broker.cli("docker-args", "rlk", "--new", "--engine", "podman", check=True)
    out = user_broker.cli("sandbox", "check", "rlk", "--engine", "podman", "--image", image, timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "inference.local is 10.0.2.2" in out.stdout
