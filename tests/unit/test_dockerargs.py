"""`docker-args`: each format parses back into exactly the wiring it promises (base URL, the
sandbox's Claude Code dir mounted as CLAUDE_CONFIG_DIR), and the CLI issues and rotates keys
into that dir, never onto its output."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from broker.sandboxes.key_store import KeyStore
from broker.cli import main
from broker.sandboxes import engine_args as da
from broker.sandboxes.keys import hash_key
from broker.common.errors import ConfigError
from broker.config.listen import parse_listen

URL = "http://inference.local:8765"
DIR = "/home/me/.local/state/inference-broker/sandboxes/box$1"  # a `$` on purpose
WIRING = da.Wiring(URL, DIR)
MOUNTED = {"ANTHROPIC_BASE_URL": URL, "CLAUDE_CONFIG_DIR": da.CONTAINER_CONFIG_DIR}


def _run_flags(argv: list[str]) -> tuple[list[str], dict[str, str | None], list[str]]:
    """Split `docker run` flags into --add-host values, -e assignments and --mount specs."""
    hosts, env, mounts = [], {}, []
    it = iter(argv)
    for flag in it:
        value = next(it)
        if flag == "--add-host":
            hosts.append(value)
        elif flag == "-e":
            name, sep, val = value.partition("=")
            env[name] = val if sep else None
        elif flag == "--mount":
            mounts.append(value)
        else:
            raise AssertionError(f"unexpected flag {flag}")
    return hosts, env, mounts


def test_run_line_parses_back() -> None:
    line = da.render("run", WIRING)
    assert line.endswith("\n") and line.count("\n") == 1
    hosts, env, mounts = _run_flags(shlex.split(line))
    assert hosts == ["inference.local:host-gateway"]
    assert env == MOUNTED
    assert mounts == [f"type=bind,src={DIR},dst={da.CONTAINER_CONFIG_DIR}"]


def test_run_refuses_a_dir_docker_mount_cannot_carry() -> None:
    with pytest.raises(ConfigError, match="--mount"):
        da.render("run", da.Wiring(URL, "/state/a,b"))


def test_free_name_takes_the_first_gap() -> None:
    assert da.free_name([]) == "sandbox-1"
    assert da.free_name(["sandbox-1", "sandbox-3", "other"]) == "sandbox-2"
    assert da.free_name(["x-1"], prefix="x") == "x-2"


def test_env_file_points_at_the_host_dir() -> None:
    env = dict(line.split("=", 1) for line in da.render("env", WIRING).splitlines())
    assert env == {"ANTHROPIC_BASE_URL": URL, "CLAUDE_CONFIG_DIR": DIR}


def test_compose_snippet_parses_back() -> None:
    doc = yaml.safe_load(da.render("compose", WIRING, name="agent"))
    service = doc["services"]["agent"]
    assert service["extra_hosts"] == ["inference.local:host-gateway"]
    assert service["environment"] == MOUNTED
    assert service["volumes"] == [{"type": "bind", "source": DIR.replace("$", "$$"),
                                   "target": da.CONTAINER_CONFIG_DIR}]


def test_devcontainer_fragment_parses_back() -> None:
    doc = json.loads(da.render("devcontainer", WIRING))
    assert doc["runArgs"] == ["--add-host=inference.local:host-gateway"]
    assert doc["containerEnv"] == MOUNTED
    assert doc["mounts"] == [{"type": "bind", "source": DIR, "target": da.CONTAINER_CONFIG_DIR}]


def test_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError):
        da.render("k8s", WIRING)


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

ENGINE_INFO = Path(__file__).parent / "engine_info"


def _recorded(name: str, gateway: str | None = None):
    from broker.sandboxes import engines, engines_probe

    engine = engines.parse_info((ENGINE_INFO / f"{name}.json").read_text())
    return lambda requested=None, program=None: engines_probe.Detected(engine, engine.kind, gateway)


@pytest.fixture(autouse=True)
def rootful_docker(monkeypatch):
    """The engine these CLI tests meet: recorded rootful docker (no engine runs in unit tests)."""
    from broker.sandboxes import engines_probe

    monkeypatch.setattr(engines_probe, "detect", _recorded("docker-rootful"))


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


def _stand_in_key(config: Path, name: str = "box") -> str:
    doc = json.loads((config.parent / "state" / "sandboxes" / name / ".credentials.json").read_text())
    return doc["claudeAiOauth"]["accessToken"]


def test_cli_for_unknown_sandbox_says_how_to_create_it(capsys, config: Path) -> None:
    rc, out, err = _cli(capsys, config, "box")
    assert rc == 1 and out == "" and "--new" in err


def test_cli_new_then_rotate_writes_the_key_only_into_the_sandbox_dir(capsys, config: Path) -> None:
    rc, out, err = _cli(capsys, config, "box", "--new")
    first = _stand_in_key(config)
    assert rc == 0 and first.startswith("sk-ib-") and first not in out + err
    assert _hashes(config) == {"box": hash_key(first)}
    hosts, env, mounts = _run_flags(shlex.split(out))
    box = (config.parent / "state" / "sandboxes" / "box").resolve()
    assert env["CLAUDE_CONFIG_DIR"] == da.CONTAINER_CONFIG_DIR
    assert mounts == [f"type=bind,src={box},dst={da.CONTAINER_CONFIG_DIR}"]

    rc, again, _ = _cli(capsys, config, "box")  # no secret in it: printable any time
    assert rc == 0 and again == out

    rc, out, err = _cli(capsys, config, "box", "--rotate", "--format", "env")
    second = _stand_in_key(config)
    assert rc == 0 and second != first and "old one stops working" in err
    assert dict(line.split("=", 1) for line in out.splitlines())["CLAUDE_CONFIG_DIR"] == str(box)
    assert _hashes(config) == {"box": hash_key(second)}


def test_cli_options_without_a_new_key_are_refused(capsys, config: Path) -> None:
    assert _cli(capsys, config, "box", "--new")[0] == 0
    rc, out, err = _cli(capsys, config, "box", "--workdir", "/workspace")
    assert rc == 1 and out == "" and "--rotate" in err


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
    rc, out, err = _cli(capsys, path, "box", "--new", "--format", "devcontainer")
    assert rc == 0 and json.loads(out)["containerEnv"]["ANTHROPIC_BASE_URL"] == "http://inference.local:41235"
    assert "the broker is not running: start it with `inference-broker run`" in err


def test_cli_warns_when_containers_cannot_reach_the_broker(capsys, tmp_path: Path, monkeypatch) -> None:
    from broker.cli import docker_args_cmd

    path, state = tmp_path / "c.yaml", tmp_path / "state"
    path.write_text(f'listen: ["127.0.0.1:8765"]\nstate_dir: "{state}"\n')
    monkeypatch.setattr(docker_args_cmd, "ask_or_none", lambda config, payload: {"status": {}})  # a broker runs
    state.mkdir()
    (state / "listen.json").write_text(json.dumps({"listen": ["127.0.0.1:8765"]}))
    rc, out, err = _cli(capsys, path, "box", "--new")
    assert rc == 0 and "does not listen on the docker bridge" in err and "add `docker:PORT`" in err


@pytest.mark.parametrize(
    "recorded, gateway, expect",
    [
        ("podman-4.3-rootful", "10.88.0.1", ["--add-host", "inference.local:10.88.0.1"]),
        ("podman-4.3-rootless", None, ["--add-host", "inference.local:10.0.2.2", "--network",
                                       "slirp4netns:allow_host_loopback=true", "--userns", "keep-id:uid=1000,gid=1000"]),
    ],
)
def test_cli_prints_the_engine_flags_and_maps_rootless_users(capsys, config: Path, monkeypatch, recorded: str,
                                                             gateway: str | None, expect: list[str]) -> None:
    from broker.sandboxes import engines_probe

    monkeypatch.setattr(engines_probe, "detect", _recorded(recorded, gateway))
    chowned: list[int | None] = []
    monkeypatch.setattr("broker.sandboxes.claude_dir.check_uid", lambda uid: chowned.append(uid))
    monkeypatch.setattr("broker.sandboxes.claude_dir._owner_for", lambda path, uid: None)
    rc, out, _ = _cli(capsys, config, "box", "--new", "--uid", "1000", "--engine", "podman")
    assert rc == 0 and shlex.split(out)[: len(expect)] == expect
    # rootful: the dir is handed to uid 1000 on the host; rootless: mapped, never chowned
    assert chowned == ([1000] if "rootful" in recorded else [None])


def test_cli_port_override(capsys, config: Path) -> None:
    rc, out, _ = _cli(capsys, config, "box", "--new", "--port", "1234", "--format", "compose")
    env = yaml.safe_load(out)["services"]["box"]["environment"]
    assert rc == 0 and env["ANTHROPIC_BASE_URL"] == "http://inference.local:1234"
