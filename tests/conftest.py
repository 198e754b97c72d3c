"""What every layer shares: markers by directory, the fake token endpoint."""

from __future__ import annotations

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


@pytest.fixture
def token_endpoint() -> FakeTokenEndpoint:
    return FakeTokenEndpoint()


@pytest.fixture
async def token_url(token_endpoint: FakeTokenEndpoint, aiohttp_server) -> str:
    server = await aiohttp_server(token_endpoint.make_app())
    yield str(server.make_url("/v1/oauth/token"))
    assert token_endpoint.problems == [], token_endpoint.problems
