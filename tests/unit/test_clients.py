import pytest

from broker.usage.clients import client_product


@pytest.mark.parametrize("ua, product", [
    ("claude-cli/2.1.197 (external, sdk-cli)", "claude-cli/2.1.197"),
    ("Anthropic/Python 2.14.0", "anthropic-python/2.14.0"),
    ("curl/8.1.2", "curl/8.1.2"),
    ("python-httpx/0.28", "python-httpx/0.28"),
    ("Mozilla/5.0 (X11; Linux x86_64)", "mozilla/5.0"),
    ("", "unknown"), (None, "unknown"), ("   ", "unknown"), ("(odd)", "unknown"),
    ("x" * 500, "x" * 41),
])
def test_client_product(ua, product):
    assert client_product(ua) == product
