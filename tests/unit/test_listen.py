"""`listen` entries: what parses, what is refused, and what binds they become."""

from __future__ import annotations

import pytest

from broker.config.settings import DEFAULT_LISTEN
from broker.common.errors import ConfigError
from broker.config.listen import ListenSpec, parse_listen, resolve_listen


@pytest.mark.parametrize(
    "entry, host, port",
    [
        ("127.0.0.1:8765", "127.0.0.1", 8765),
        ("  127.0.0.1:0 ", "127.0.0.1", 0),
        ("docker:9000", "docker", 9000),
        ("docker", "docker", 8765),
        ("localhost:1", "localhost", 1),
        ("[::1]:8765", "::1", 8765),
        ("[0:0:0:0:0:0:0:1]:80", "::1", 80),
        ("0.0.0.0:8765", "0.0.0.0", 8765),
        ("[::]:65535", "::", 65535),
        ("169.254.7.1:0", "169.254.7.1", 0),
    ],
)
def test_parse_accepts(entry: str, host: str, port: int) -> None:
    assert parse_listen(entry) == ListenSpec(host, port)


@pytest.mark.parametrize(
    "entry, words",
    [
        ("", "empty"),
        ("127.0.0.1", "host:port"),
        ("127.0.0.1:", "number"),
        ("127.0.0.1:http", "number"),
        ("127.0.0.1:-1", "number"),
        ("127.0.0.1:70000", "65535"),
        ("example.com:8765", "IP address"),
        ("docker0:8765", "IP address"),
        ("::1:8765", "[address]:port"),
        ("[::1]8765", "[address]:port"),
        ("[::1:8765", "[address]:port"),
        ("[127.0.0.1]:80", "only for IPv6"),
        ("[docker]:80", "only for IPv6"),
    ],
)
def test_parse_refuses_naming_the_entry(entry: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_listen(entry)
    assert words in err.value.message
    if entry:
        assert repr(entry) in err.value.message


def test_default_parses_to_loopback() -> None:
    assert [parse_listen(e) for e in DEFAULT_LISTEN] == [ListenSpec("127.0.0.1", 8765)]


def test_spec_str_round_trips() -> None:
    for entry in ("127.0.0.1:8765", "[::1]:9", "docker:0"):
        assert str(parse_listen(entry)) == entry


def _resolve(entries: list[str], gateway: str | None):
    return resolve_listen([parse_listen(e) for e in entries], gateway)


@pytest.mark.parametrize(
    "entries, gateway, binds",
    [
        (["127.0.0.1:8765"], None, [("127.0.0.1", 8765)]),
        (["127.0.0.1:0", "docker:0"], "172.17.0.1", [("127.0.0.1", 0), ("172.17.0.1", 0)]),
        (["127.0.0.1:8765", "docker"], "172.18.0.1", [("127.0.0.1", 8765), ("172.18.0.1", 8765)]),
        (["127.0.0.1:8765", "docker"], None, [("127.0.0.1", 8765)]),
        (["docker:8765", "172.17.0.1:8765"], "172.17.0.1", [("172.17.0.1", 8765)]),
        (["127.0.0.1:0", "127.0.0.1:0"], None, [("127.0.0.1", 0), ("127.0.0.1", 0)]),
        (["[::1]:8765"], None, [("::1", 8765)]),
    ],
)
def test_resolve_binds(entries: list[str], gateway: str | None, binds: list[tuple[str, int]]) -> None:
    assert _resolve(entries, gateway)[0] == binds


def test_resolve_quiet_for_loopback_and_found_bridge() -> None:
    assert _resolve(["127.0.0.1:8765", "docker:8765"], "172.17.0.1")[1] == []


def test_resolve_warns_when_bridge_is_missing() -> None:
    binds, warnings = _resolve(["docker:8765"], None)
    assert binds == []
    assert len(warnings) == 1 and "docker" in warnings[0] and "once" in warnings[0]


@pytest.mark.parametrize("entry", ["0.0.0.0:8765", "[::]:8765"])
def test_resolve_keeps_wildcard_with_loud_warning(entry: str) -> None:
    binds, warnings = _resolve([entry], "172.17.0.1")
    assert binds == [(parse_listen(entry).host, 8765)]
    assert len(warnings) == 1 and "EVERY network" in warnings[0]
