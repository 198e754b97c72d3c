"""`docker-args`: each format parses back into exactly the wiring it promises, and the CLI
issues, rotates or refers to keys as it says."""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
import yaml

from broker.adapters.keystore import KeyStore
from broker.cli import main
from broker.core import dockerargs as da
from broker.core.keys import hash_key
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


# -- the CLI face, against a real key store in a temp state dir ---------------------------------

@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "config.yaml"
    state = tmp_path / "state"
    path.write_text(f'listen: ["127.0.0.1:8765", "docker:9000"]\nstate_dir: "{state}"\n')
    return path


def _cli(capsys, config: Path, *argv: str) -> tuple[int, str, str]:
    rc = main(["--config", str(config), "docker-args", *argv])
    out = capsys.readouterr()
    return rc, out.out, out.err


def _hashes(config: Path) -> dict[str, str]:
    store = KeyStore(config.parent / "state" / "broker.db")
    try:
        return store.hashes()
    finally:
        store.close()


def test_cli_without_key_refers_to_callers_env(capsys, config: Path) -> None:
    rc, out, err = _cli(capsys, config, "box")
    assert rc == 0
    assert _run_env(shlex.split(out)) == (
        ["inference.local:host-gateway"],
        {"ANTHROPIC_BASE_URL": "http://inference.local:9000", "ANTHROPIC_API_KEY": None},
    )
    assert "--new" in err and "--rotate" in err


def test_cli_new_then_rotate(capsys, config: Path) -> None:
    rc, out, err = _cli(capsys, config, "box", "--new")
    first = _run_env(shlex.split(out))[1]["ANTHROPIC_API_KEY"]
    assert rc == 0 and first and first.startswith("sk-ib-") and first not in err
    assert _hashes(config) == {"box": hash_key(first)}

    rc, out, err = _cli(capsys, config, "box", "--rotate", "--format", "env")
    second = dict(line.split("=", 1) for line in out.splitlines())["ANTHROPIC_API_KEY"]
    assert rc == 0 and second != first and "old one stops working" in err
    assert _hashes(config) == {"box": hash_key(second)}


@pytest.mark.parametrize("argv", [["box", "--rotate"], ["bad name!", "--new"]])
def test_cli_refuses_unknown_or_bad_sandbox(capsys, config: Path, argv: list[str]) -> None:
    rc, out, err = _cli(capsys, config, *argv)
    assert rc == 1 and out == "" and "sandbox" in err.lower()


def test_cli_new_twice_is_refused(capsys, config: Path) -> None:
    assert _cli(capsys, config, "box", "--new")[0] == 0
    rc, out, err = _cli(capsys, config, "box", "--new")
    assert rc == 1 and out == "" and "already exists" in err


def test_cli_new_and_rotate_exclude_each_other(capsys, config: Path) -> None:
    with pytest.raises(SystemExit):
        _cli(capsys, config, "box", "--new", "--rotate")


def test_cli_port_from_running_broker_when_configured_zero(capsys, tmp_path: Path) -> None:
    path, state = tmp_path / "c.yaml", tmp_path / "state"
    path.write_text(f'listen: ["127.0.0.1:0"]\nstate_dir: "{state}"\n')
    state.mkdir()
    (state / "listen.json").write_text(json.dumps({"listen": ["127.0.0.1:41235"]}))
    rc, out, err = _cli(capsys, path, "box", "--format", "devcontainer")
    assert rc == 0 and json.loads(out)["containerEnv"]["ANTHROPIC_BASE_URL"] == "http://inference.local:41235"
    # the Linux engine's containers cannot reach loopback; Docker Desktop's can
    assert ("loopback only" in err) is sys.platform.startswith("linux")


def test_cli_port_override(capsys, config: Path) -> None:
    rc, out, _ = _cli(capsys, config, "box", "--port", "1234", "--format", "compose")
    env = yaml.safe_load(out)["services"]["box"]["environment"]
    assert rc == 0 and env["ANTHROPIC_BASE_URL"] == "http://inference.local:1234"
