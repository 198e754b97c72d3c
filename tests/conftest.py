"""What every layer shares: markers by directory, teardown on SIGTERM/SIGHUP, the fake token
endpoint."""

from __future__ import annotations

import signal
import threading
from pathlib import Path

import pytest

from tests.fakes.token_endpoint import FakeTokenEndpoint

# A test's layer is its directory: `-m "not integration"` must leave out every file there.
MARKER_BY_DIRECTORY = {"integration": "integration", "e2e": "e2e", "reliability": "reliability"}
TESTS = Path(__file__).resolve().parent


def layer_of(path: Path) -> str | None:
    """The marker a test file's directory gives it; None under tests/unit or outside tests/."""
    try:
        top = Path(path).resolve().relative_to(TESTS).parts[0]
    except ValueError:  # collected from outside tests/
        return None
    return MARKER_BY_DIRECTORY.get(top)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        marker = layer_of(item.path)
        if marker:
            item.add_marker(marker)


# `make test` stopped by `timeout`, a closed terminal or a service manager gets SIGTERM or SIGHUP,
# which would end the process on the spot and leave what fixtures started (dockerd, containerd,
# tmux servers, containers, brokers) running. Ctrl-C's KeyboardInterrupt runs their teardown:
# these signals raise it too.
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


def _stop_as_on_ctrl_c(signum: int, frame: object) -> None:
    for sig in STOP_SIGNALS:
        signal.signal(sig, _already_stopping)
    raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}: tearing down")


def _already_stopping(signum: int, frame: object) -> None:
    """One stop is enough: `make` passes SIGTERM on to pytest besides `timeout`'s own, and a
    closing terminal's shell resends SIGHUP; a second one must not cut the teardown short."""


def _install_stop_handlers() -> None:
    """Where the signal is at its default (an ignored one, as under nohup, stays ignored)."""
    if threading.current_thread() is not threading.main_thread():
        return
    for sig in STOP_SIGNALS:
        if signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, _stop_as_on_ctrl_c)


def pytest_configure(config: pytest.Config) -> None:
    _install_stop_handlers()


def pytest_runtest_setup(item: pytest.Item) -> None:
    _install_stop_handlers()  # again: an event loop closed by a test puts its signals back to default


def pytest_unconfigure(config: pytest.Config) -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in STOP_SIGNALS:
            if signal.getsignal(sig) in (_stop_as_on_ctrl_c, _already_stopping):
                signal.signal(sig, signal.SIG_DFL)


@pytest.fixture
def token_endpoint() -> FakeTokenEndpoint:
    return FakeTokenEndpoint()


@pytest.fixture
async def token_url(token_endpoint: FakeTokenEndpoint, aiohttp_server) -> str:
    server = await aiohttp_server(token_endpoint.make_app())
    yield str(server.make_url("/v1/oauth/token"))
    assert token_endpoint.problems == [], token_endpoint.problems
