"""`listen` entries: what parses, what is refused, and what binds they become."""

from __future__ import annotations

import pytest

from broker.config.settings import DEFAULT_LISTEN
from broker.common.errors import ConfigError
from broker.config.listen import ListenSpec, bridge_binds, default_listen, parse_listen, resolve_listen


@pytest.mark.parametrize(
    "entry, host, port",
    [
        ("127.0.0.1:8765", "127.0.0.1", 8765),
        ("  127.0.0.1:0 ", "127.0.0.1", 0),
        ("docker:9000", "docker", 9000),
        ("docker", "docker", 8765),
        ("podman:9001", "podman", 9001),
        ("podman", "podman", 8765),
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


def test_default_on_linux_is_loopback_and_every_bridge() -> None:
    """Nothing to configure: docker's and podman's bridges are served as well as loopback."""
    assert [parse_listen(e) for e in default_listen("linux")] == [
        ListenSpec("127.0.0.1", 8765), ListenSpec("docker", 8765), ListenSpec("podman", 8765)]


@pytest.mark.parametrize("platform", ["darwin", "win32"])
def test_default_elsewhere_is_loopback(platform: str) -> None:
    """Docker Desktop's host-gateway reaches host loopback: no bridge to serve."""
    assert [parse_listen(e) for e in default_listen(platform)] == [ListenSpec("127.0.0.1", 8765)]


def test_config_default_follows_the_platform() -> None:
    import sys

    assert DEFAULT_LISTEN == default_listen(sys.platform)


def test_spec_str_round_trips() -> None:
    for entry in ("127.0.0.1:8765", "[::1]:9", "docker:0", "podman:8765"):
        assert str(parse_listen(entry)) == entry


def _resolve(entries: list[str]):
    return resolve_listen([parse_listen(e) for e in entries])


@pytest.mark.parametrize(
    "entries, binds",
    [
        (["127.0.0.1:8765"], [("127.0.0.1", 8765)]),
        (["127.0.0.1:0", "docker:0"], [("127.0.0.1", 0)]),
        (["127.0.0.1:8765", "docker", "podman"], [("127.0.0.1", 8765)]),
        (["172.17.0.1:8765", "172.17.0.1:8765"], [("172.17.0.1", 8765)]),
        (["127.0.0.1:0", "127.0.0.1:0"], [("127.0.0.1", 0), ("127.0.0.1", 0)]),
        (["[::1]:8765"], [("::1", 8765)]),
    ],
)
def test_resolve_binds_fixed_entries_only(entries: list[str], binds: list[tuple[str, int]]) -> None:
    assert _resolve(entries)[0] == binds


def test_resolve_quiet_for_loopback_and_bridges() -> None:
    assert _resolve(["127.0.0.1:8765", "docker:8765", "podman:8765"])[1] == []


@pytest.mark.parametrize("entry", ["0.0.0.0:8765", "[::]:8765"])
def test_resolve_keeps_wildcard_with_loud_warning(entry: str) -> None:
    binds, warnings = _resolve([entry])
    assert binds == [(parse_listen(entry).host, 8765)]
    assert len(warnings) == 1 and "EVERY network" in warnings[0]


def _bridges(entries: list[str], found: dict[str, str], fixed=()):
    return bridge_binds([parse_listen(e) for e in entries], found, "docker0", fixed)


@pytest.mark.parametrize(
    "entries, found, binds",
    [
        (["docker:8765", "podman:8765"], {}, []),
        (["docker:8765", "podman:8765"], {"docker0": "172.17.0.1"}, [("172.17.0.1", 8765)]),
        (["docker:8765", "podman:8765"], {"docker0": "172.17.0.1", "cni-podman0": "10.88.0.1"},
         [("172.17.0.1", 8765), ("10.88.0.1", 8765)]),
        (["podman:9000"], {"podman0": "10.88.0.1", "cni-podman0": "10.89.0.1"},
         [("10.88.0.1", 9000), ("10.89.0.1", 9000)]),
        (["127.0.0.1:8765", "podman:8765"], {"docker0": "172.17.0.1"}, []),  # docker not asked for
        (["docker", "docker:8765"], {"docker0": "172.17.0.1"}, [("172.17.0.1", 8765)]),
        (["docker:0"], {"docker0": "172.17.0.1"}, [("172.17.0.1", 0)]),
    ],
)
def test_bridge_binds(entries: list[str], found: dict[str, str], binds: list[tuple[str, int]]) -> None:
    assert _bridges(entries, found) == binds


def test_bridge_binds_skip_an_address_a_fixed_entry_serves() -> None:
    assert _bridges(["docker:8765"], {"docker0": "172.17.0.1"}, [("172.17.0.1", 8765)]) == []
    assert _bridges(["docker:8765"], {"docker0": "172.17.0.1"}, [("172.17.0.1", 0)]) == [("172.17.0.1", 8765)]


def test_bridge_binds_follow_the_docker_bridge_setting() -> None:
    specs = [parse_listen("docker:1")]
    assert bridge_binds(specs, {"docker0": "172.17.0.1", "br-x": "10.9.0.1"}, "br-x") == [("10.9.0.1", 1)]
