"""Fixtures for end-to-end tests: real containers and network namespaces.

- `dockerd` (session): a private Docker engine; `.env` for subprocesses, `.bridge_ip`,
  `.run(image, argv, flags=...)`.
- `probe_image`, `claude_image`, `claude_root_image` (session): locally built image tags
  (busybox; Claude Code as uid 1000; the same as root).
- `netns_sandbox` (function): a namespace where `inference.local` is the host's veth address;
  `.run(argv, env=...)`, `.host_ip`, `.sandbox_ip`.
- `serve(host, text)`: a small HTTP server on the host, stopped after the test.
- `upstream`: a fake Anthropic API and token endpoint on loopback, with a login they accept.
- `start_broker(listen)`: the real broker (`inference-broker run --no-tray`) against them;
  `.port_on(host)`, `.add_sandbox(name)`, `.sandbox_dir(name)`, `.revoke(name)`, `.cli(...)`.
- `bridged`: a broker on loopback and the docker bridge.

Each gates itself with `require_root` / `require_tools`: skipped on a developer machine that
lacks them, a failure in CI. The session's setup timings print at the end of the run.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Callable, Iterator, Sequence

import pytest

from tests.e2e.infra.broker import BrokerProcess, Upstream
from tests.e2e.infra.dockerd import DockerDaemon, DockerUnavailable
from tests.e2e.infra.images import Built, claude_version, ensure_claude_image, ensure_claude_root_image, ensure_probe_image
from tests.e2e.infra.netns import NetnsSandbox
from tests.e2e.infra.podman import Podman
from tests.e2e.infra.servers import Marker, marker_app
from tests.fakes.threaded import serve_in_thread
from tests.fakes.token_endpoint import FakeTokenEndpoint
from tests.fakes.upstream import FakeAnthropic
from tests.support import require, require_root, require_tools

_timings: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _timings:
        terminalreporter.write_sep("-", "e2e infrastructure")
        for line in _timings:
            terminalreporter.write_line(line)


@pytest.fixture(scope="session")
def dockerd() -> Iterator[DockerDaemon]:
    require_root()
    require_tools("dockerd", "docker", "ip")
    daemon = DockerDaemon()
    try:
        daemon.start()
    except DockerUnavailable as exc:
        require(False, str(exc))
    _timings.append(f"dockerd ready in {daemon.startup_seconds:.2f}s (bridge {daemon.bridge_ip})")
    try:
        yield daemon
    finally:
        started = time.monotonic()
        daemon.stop()
        _timings.append(f"dockerd stopped and cleaned up in {time.monotonic() - started:.2f}s")


def _image(build: Callable[[dict[str, str]], Built], daemon: DockerDaemon) -> str:
    built = build(daemon.env)
    how = "cached" if built.cached else "built"
    _timings.append(f"{built.alias} ({built.tag}) {how} in {built.seconds:.2f}s")
    return built.alias


@pytest.fixture(scope="session")
def probe_image(dockerd: DockerDaemon) -> str:
    """busybox-static: sh, wget, timeout, nc. Use `timeout 5 wget -qO- URL` (`wget -T` crashes)."""
    require_tools("busybox")
    return _image(ensure_probe_image, dockerd)


@pytest.fixture(scope="session")
def claude_image(dockerd: DockerDaemon) -> str:
    """The real Claude Code CLI (`claude`), busybox, CA roots; runs as uid 1000, HOME=/home/sandbox."""
    require_tools("claude", "busybox", "ldd")
    image = _image(ensure_claude_image, dockerd)
    _timings.append(f"Claude Code in the images: {claude_version(dockerd.env, image)}")
    return image


@pytest.fixture(scope="session")
def claude_root_image(dockerd: DockerDaemon, claude_image: str) -> str:
    """`claude_image` running as root (HOME=/root)."""
    return _image(ensure_claude_root_image, dockerd)


@pytest.fixture(scope="session")
def podman() -> Iterator[Podman]:
    """Rootful podman (Debian's 4.3 in CI): `.run(image, argv, flags=...)`, `.env` for subprocesses."""
    require_root()
    require_tools("podman", "busybox")
    engine = Podman.rootful()
    _timings.append(f"podman: {engine.podman('--version').stdout.strip()} (rootful)")
    try:
        yield engine
    finally:
        engine.cleanup()


@pytest.fixture(scope="session")
def podman_probe_image(podman: Podman) -> str:
    started = time.monotonic()
    image = podman.probe_image()
    _timings.append(f"{image} for podman ready in {time.monotonic() - started:.2f}s")
    return image


@pytest.fixture(scope="session")
def podman_claude_image(podman: Podman) -> str:
    """The Claude Code image for podman, running as uid 1000."""
    require_tools("claude", "ldd")
    started = time.monotonic()
    image = podman.claude_image()
    _timings.append(f"{image} for podman ready in {time.monotonic() - started:.2f}s")
    return image


@pytest.fixture(scope="session")
def rootless_podman() -> Iterator[Podman]:
    """Podman as a plain user (subuids, slirp4netns), with the probe and Claude Code images in
    that user's own store."""
    require_root()
    require_tools("podman", "busybox", "setpriv", "runuser", "slirp4netns", "newuidmap")
    engine = Podman.rootless()
    started = time.monotonic()
    engine.probe_image()
    _timings.append(f"rootless podman as {engine.user}: images ready in {time.monotonic() - started:.2f}s")
    try:
        yield engine
    finally:
        engine.cleanup()


@pytest.fixture
def netns_sandbox() -> Iterator[NetnsSandbox]:
    require_root()
    require_tools("ip")
    box = NetnsSandbox.create()
    try:
        yield box
    finally:
        box.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., Marker]]:
    """`serve(host, text="...", port=0)` starts a marker server on the host; stopped after."""
    with contextlib.ExitStack() as stack:

        def start(host: str, text: str = "hello from the host", port: int = 0) -> Marker:
            hosts: list[str] = []
            url = stack.enter_context(serve_in_thread(marker_app(text, hosts), host, port))
            return Marker(url, hosts)

        yield start


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    tokens = FakeTokenEndpoint()
    access, refresh = tokens.issue()
    keys: list[str] = []
    fake = FakeAnthropic(valid_tokens=lambda: tokens.valid_access, forbidden=lambda: keys)
    with serve_in_thread(fake.make_app) as api, serve_in_thread(tokens.make_app) as tok:
        yield Upstream(fake, tokens, str(api), f"{tok}/v1/oauth/token", access, refresh, keys)


@pytest.fixture
def start_broker(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory,
                 upstream: Upstream) -> Iterator[Callable[[Sequence[str] | None], BrokerProcess]]:
    """`start_broker(["127.0.0.1:0", "docker:0"])`, or `start_broker(None)` for a config with no
    `listen` at all; stopped (SIGTERM) after the test. Its CLI talks to the test's engine."""
    brokers: list[BrokerProcess] = []
    engine_env: dict[str, str] = {}
    if "dockerd" in request.fixturenames:
        daemon = request.getfixturevalue("dockerd")
        engine_env = {k: daemon.env[k] for k in ("DOCKER_HOST", "DOCKER_CONFIG")}
    if "podman" in request.fixturenames:
        engine_env = {"CONTAINERS_CONF": request.getfixturevalue("podman").env["CONTAINERS_CONF"]}

    def start(listen: Sequence[str] | None) -> BrokerProcess:
        root: Path = tmp_path_factory.mktemp("broker")
        broker = BrokerProcess(root, listen, upstream.url, upstream.token_url, upstream.access,
                               upstream.refresh, issued=upstream.sandbox_keys, env=engine_env)
        brokers.append(broker)
        return broker.start()

    yield start
    for broker in brokers:
        broker.stop()


@pytest.fixture
def bridged(dockerd: DockerDaemon, start_broker: Callable[[Sequence[str]], BrokerProcess]) -> BrokerProcess:
    """A broker listening on loopback and on the docker bridge, both on free ports."""
    broker = start_broker(["127.0.0.1:0", "docker:0"])
    assert broker.port_on(dockerd.bridge_ip) and broker.port_on("127.0.0.1")
    return broker
