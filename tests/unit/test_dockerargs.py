"""`docker-args` formats: each output parses back into exactly the wiring it promises."""

from __future__ import annotations

import json
import shlex

import pytest
import yaml

from broker.core import dockerargs as da
from broker.core.errors import ConfigError
from broker.core.listen import parse_listen

URL = "http://inference.local:8765"
KEY = "sk-ib-AbC_12-xyz$weird'quote"  # shell and compose metacharacters on purpose


def _run_env(argv: list[str]) -> tuple[list[str], dict[str, str | None]]:
    """Split `docker run` flags into --add-host values and -e assignments (None: pass-through)."""
    hosts, env = [], {}
    it = iter(argv)
    for flag in it:
        value = next(it)
        if flag == "--add-host":
            hosts.append(value)
        elif flag == "-e":
            name, sep, val = value.partition("=")
            env[name] = val if sep else None
        else:
            raise AssertionError(f"unexpected flag {flag}")
    return hosts, env


@pytest.mark.parametrize("key", [KEY, None])
def test_run_line_parses_back(key: str | None) -> None:
    line = da.render("run", URL, key)
    assert line.endswith("\n") and line.count("\n") == 1
    hosts, env = _run_env(shlex.split(line))
    assert hosts == ["inference.local:host-gateway"]
    assert env == {"ANTHROPIC_BASE_URL": URL, "ANTHROPIC_API_KEY": key}


@pytest.mark.parametrize("key", [KEY, None])
def test_env_file_parses_back(key: str | None) -> None:
    env = {}
    for line in da.render("env", URL, key).splitlines():
        name, sep, val = line.partition("=")
        env[name] = val if sep else None
    assert env == {"ANTHROPIC_BASE_URL": URL, "ANTHROPIC_API_KEY": key}


@pytest.mark.parametrize(
    "key, expected", [(KEY, KEY.replace("$", "$$")), (None, "${ANTHROPIC_API_KEY}")]
)
def test_compose_snippet_parses_back(key: str | None, expected: str) -> None:
    doc = yaml.safe_load(da.render("compose", URL, key, name="agent"))
    service = doc["services"]["agent"]
    assert service["extra_hosts"] == ["inference.local:host-gateway"]
    assert service["environment"] == {"ANTHROPIC_BASE_URL": URL, "ANTHROPIC_API_KEY": expected}


@pytest.mark.parametrize("key, expected", [(KEY, KEY), (None, "${localEnv:ANTHROPIC_API_KEY}")])
def test_devcontainer_fragment_parses_back(key: str | None, expected: str) -> None:
    doc = json.loads(da.render("devcontainer", URL, key))
    assert doc["runArgs"] == ["--add-host=inference.local:host-gateway"]
    assert doc["containerEnv"] == {"ANTHROPIC_BASE_URL": URL, "ANTHROPIC_API_KEY": expected}


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError):
        da.render("k8s", URL, None)


@pytest.mark.parametrize(
    "port, host, url",
    [(8765, "inference.local", URL), (1, "127.0.0.1", "http://127.0.0.1:1"), (2, "::1", "http://[::1]:2")],
)
def test_base_url(port: int, host: str, url: str) -> None:
    assert da.base_url(port, host) == url


GW = "172.17.0.1"


@pytest.mark.parametrize(
    "listen, bound, gateway, port",
    [
        (["127.0.0.1:8765"], [], None, 8765),  # Docker Desktop: loopback serves
        (["127.0.0.1:8765", "docker:9000"], [], GW, 9000),  # the bridge entry wins
        (["127.0.0.1:8765", "docker:9000"], [], None, 9000),  # even before the bridge exists
        (["127.0.0.1:1", "0.0.0.0:2"], [], GW, 2),
        (["127.0.0.1:1", f"{GW}:3"], [], GW, 3),
        (["127.0.0.1:0", "docker:0"], ["127.0.0.1:41235", f"{GW}:41236"], GW, 41236),
        (["127.0.0.1:0"], ["127.0.0.1:41235"], None, 41235),
        (["[::1]:0"], ["[::1]:5"], None, 5),
    ],
)
def test_sandbox_port(listen: list[str], bound: list[str], gateway: str | None, port: int) -> None:
    specs = [parse_listen(e) for e in listen]
    assert da.sandbox_port(specs, bound, gateway) == port


@pytest.mark.parametrize(
    "listen, bound, gateway",
    [([], [], None), (["127.0.0.1:0"], [], None), (["docker:0"], ["127.0.0.1:5"], None)],
)
def test_sandbox_port_unknown(listen: list[str], bound: list[str], gateway: str | None) -> None:
    with pytest.raises(ConfigError):
        da.sandbox_port([parse_listen(e) for e in listen], bound, gateway)


@pytest.mark.parametrize(
    "listen, reaches",
    [(["127.0.0.1:1", "[::1]:2", "localhost:3"], False), (["127.0.0.1:1", "docker"], True)],
)
def test_reaches_containers(listen: list[str], reaches: bool) -> None:
    assert da.reaches_containers([parse_listen(e) for e in listen]) is reaches
