"""What every layer shares: markers by directory, the fake token endpoint."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.fakes.token_endpoint import FakeTokenEndpoint

# A test's layer is its directory: `-m "not integration"` must leave out every file there.
MARKER_BY_DIRECTORY = {"integration": "integration", "e2e": "e2e", "reliability": "reliability"}
TESTS = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        try:
            top = Path(item.path).resolve().relative_to(TESTS).parts[0]
        except ValueError:  # collected from outside tests/
            continue
        marker = MARKER_BY_DIRECTORY.get(top)
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
