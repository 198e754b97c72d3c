"""Engine decisions from what real engines report: which flags reach the broker, per engine,
version, network backend and user mapping (recorded `podman info` / `docker info` in
tests/unit/engine_info/, see its README)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from broker.sandboxes import engine_args as da
from broker.sandboxes import engines as en

INFO = Path(__file__).parent / "engine_info"


def engine(name: str) -> en.Engine:
    return en.parse_info((INFO / f"{name}.json").read_text())


@pytest.mark.parametrize(
    "name, kind, version, rootless, network, via",
    [
        ("podman-4.3-rootful", "podman", (4, 3, 1), False, None, en.VIA_PODMAN_BRIDGE),
        ("podman-4.3-rootless", "podman", (4, 3, 1), True, "slirp4netns", en.VIA_LOOPBACK),
        ("podman-4.9-rootful", "podman", (4, 9, 3), False, None, en.VIA_PODMAN_BRIDGE),
        ("podman-4.9-rootless", "podman", (4, 9, 3), True, "slirp4netns", en.VIA_LOOPBACK),
        ("podman-5.3-rootless-pasta", "podman", (5, 3, 1), True, "pasta", en.VIA_LOOPBACK),
        ("docker-rootful", "docker", (20, 10, 24), False, None, en.VIA_DOCKER_BRIDGE),
        ("docker-rootless", "docker", (20, 10, 24), True, None, en.VIA_LOOPBACK),
    ],
)
def test_parse_recorded_info(name, kind, version, rootless, network, via) -> None:
    e = engine(name)
    assert (e.kind, e.version, e.rootless, e.network, e.via) == (kind, version, rootless, network, via)


def test_podman5_without_the_field_defaults_to_pasta() -> None:
    doc = json.loads((INFO / "podman-5.3-rootless-pasta.json").read_text())
    del doc["host"]["rootlessNetworkCmd"]
    assert en.parse_info(json.dumps(doc)).network == "pasta"


def test_docker_desktop_goes_through_host_loopback() -> None:
    doc = json.loads((INFO / "docker-rootful.json").read_text())
    doc["OperatingSystem"] = "Docker Desktop"
    e = en.parse_info(json.dumps(doc))
    assert e.desktop and e.via == en.VIA_LOOPBACK
    assert en.flags(e, 8765).run_options() == ["--add-host", "inference.local:host-gateway"]


def test_podman_network_gateway() -> None:
    assert en.parse_network_gateway((INFO / "podman-4.3-rootful-network.json").read_text()) == "10.88.0.1"
    assert en.parse_network_gateway("not json") is None
    assert en.parse_network_gateway('[{"subnets": [{"gateway": "fd00::1"}]}]') is None


@pytest.mark.parametrize("text", ["", "[]", "{}", "nope", '{"host": "x"}'])
def test_garbage_info_is_a_clear_error(text: str) -> None:
    with pytest.raises(en.EngineError):
        en.parse_info(text)


@pytest.mark.parametrize(
    "name, uid, options",
    [
        # rootful docker as today: host-gateway is docker0, which the broker serves
        ("docker-rootful", None, ["--add-host", "inference.local:host-gateway"]),
        ("docker-rootful", 1000, ["--add-host", "inference.local:host-gateway"]),  # the dir is chowned
        # rootful podman < 4.7 refuses host-gateway; >= 4.7 maps it to the default-route
        # address, which the broker does not serve: the bridge gateway for both
        ("podman-4.3-rootful", None, ["--add-host", "inference.local:10.88.0.1"]),
        ("podman-4.9-rootful", 1000, ["--add-host", "inference.local:10.88.0.1"]),
        # rootless podman 4.x: slirp4netns with host loopback as 10.0.2.2
        ("podman-4.3-rootless", None, ["--add-host", "inference.local:10.0.2.2", "--network",
                                       "slirp4netns:allow_host_loopback=true", "--userns", "keep-id"]),
        ("podman-4.9-rootless", 1000, ["--add-host", "inference.local:10.0.2.2", "--network",
                                       "slirp4netns:allow_host_loopback=true", "--userns", "keep-id:uid=1000,gid=1000"]),
        ("podman-4.3-rootless", 0, ["--add-host", "inference.local:10.0.2.2", "--network",
                                    "slirp4netns:allow_host_loopback=true"]),
        # podman 5 (pasta): the container's own 127.0.0.1:PORT forwarded to the host's
        ("podman-5.3-rootless-pasta", 1000, ["--add-host", "inference.local:127.0.0.1", "--network",
                                             "pasta:-T,8765", "--userns", "keep-id:uid=1000,gid=1000"]),
        # rootless docker: RootlessKit's 10.0.2.2; the container's root is you
        ("docker-rootless", 1000, ["--add-host", "inference.local:10.0.2.2", "--user", "0:0"]),
        ("docker-rootless", 0, ["--add-host", "inference.local:10.0.2.2"]),
    ],
)
def test_flags_per_engine(name: str, uid: int | None, options: list[str]) -> None:
    assert en.flags(engine(name), 8765, container_uid=uid).run_options() == options


def test_rootful_podman_uses_the_network_it_reports() -> None:
    assert en.flags(engine("podman-4.3-rootful"), 1, podman_gateway="10.99.0.1").add_host == "inference.local:10.99.0.1"


def test_rootless_docker_names_the_daemon_setting() -> None:
    assert "DISABLE_HOST_LOOPBACK=false" in (en.flags(engine("docker-rootless"), 1).note or "")
    assert en.flags(engine("podman-4.3-rootless"), 1).note is None


def test_only_rootful_engines_chown_on_the_host() -> None:
    assert en.chown_on_host(engine("docker-rootful")) and en.chown_on_host(engine("podman-4.3-rootful"))
    assert not en.chown_on_host(engine("podman-4.3-rootless")) and not en.chown_on_host(engine("docker-rootless"))


@pytest.mark.parametrize("name", ["podman-4.3-rootless", "podman-5.3-rootless-pasta", "docker-rootless",
                                  "podman-4.9-rootful", "docker-rootful"])
def test_every_format_carries_the_engine_flags(name: str) -> None:
    flags = en.flags(engine(name), 8765, container_uid=1000)
    w = da.Wiring("http://inference.local:8765", "/state/sandboxes/box", flags)
    run = da.run_flags(w)
    assert run[: len(flags.run_options())] == flags.run_options()
    service = yaml.safe_load(da.render("compose", w))["services"]["sandbox"]
    assert service["extra_hosts"] == [flags.add_host]
    assert (service.get("network_mode"), service.get("userns_mode"), service.get("user")) == (
        flags.network, flags.userns, flags.user)
    dev = json.loads(da.render("devcontainer", w))
    expected = [f"--add-host={flags.add_host}"] + [f"{k}={v}" for k, v in (
        ("--network", flags.network), ("--userns", flags.userns), ("--user", flags.user)) if v]
    assert dev["runArgs"] == expected


@pytest.mark.parametrize(
    "text, version", [("4.3.1", (4, 3, 1)), ("5.3.1-dev", (5, 3, 1)), ("20.10.24+dfsg1", (20, 10, 24)),
                      ("v29.1", (29, 1)), ("", ())],
)
def test_parse_version(text: str, version: tuple[int, ...]) -> None:
    assert en.parse_version(text) == version


def test_podman_shim_is_podman() -> None:
    assert en.is_podman_cli("podman version 4.3.1\n")
    assert en.is_podman_cli("Emulate Docker CLI using podman. Create /etc/containers/nodocker to quiet msg.\n"
                            "podman version 5.3.1\n")
    assert not en.is_podman_cli("Docker version 28.2.2, build e6534b4\n")


@pytest.mark.parametrize(
    "spec, uid", [("", 0), ("root", 0), ("0", 0), ("1000", 1000), ("1000:1000", 1000), ("node", None),
                  ("node:node", None)],
)
def test_numeric_uid(spec: str, uid: int | None) -> None:
    assert en.numeric_uid(en.parse_user(spec)[0]) == uid


def test_uid_from_passwd() -> None:
    passwd = "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nbad\nx:x:y:1::/:/\n"
    assert en.uid_from_passwd("node", passwd) == 1000
    assert en.uid_from_passwd("root", passwd) == 0
    assert en.uid_from_passwd("x", passwd) is None and en.uid_from_passwd("ghost", passwd) is None


GW = "172.17.0.1"


@pytest.mark.parametrize(
    "via, gateway, bound, listen, reason",
    [
        (en.VIA_DOCKER_BRIDGE, GW, ["127.0.0.1:8765", f"{GW}:8765"], ["127.0.0.1:8765", "docker"], None),
        (en.VIA_DOCKER_BRIDGE, GW, ["127.0.0.1:8765"], ["127.0.0.1:8765"], "add `docker:PORT`"),
        (en.VIA_DOCKER_BRIDGE, None, ["127.0.0.1:8765"], ["127.0.0.1:8765", "docker"], "not listening"),
        (en.VIA_PODMAN_BRIDGE, "10.88.0.1", ["127.0.0.1:8765"], ["127.0.0.1:8765", "podman"], None),
        (en.VIA_PODMAN_BRIDGE, "10.88.0.1", ["127.0.0.1:8765"], ["127.0.0.1:8765"], "add `podman:PORT`"),
        (en.VIA_LOOPBACK, None, ["127.0.0.1:8765"], ["127.0.0.1:8765"], None),
        (en.VIA_LOOPBACK, None, [f"{GW}:8765"], [f"{GW}:8765"], "127.0.0.1"),
    ],
)
def test_unreachable_reason(via, gateway, bound, listen, reason) -> None:
    from broker.config.listen import parse_listen

    got = da.unreachable_reason(via, gateway, bound, [parse_listen(e) for e in listen])
    assert (got is None) if reason is None else (reason in (got or ""))


@pytest.mark.parametrize(
    "via, gateway, listen, bound, port",
    [
        (en.VIA_PODMAN_BRIDGE, "10.88.0.1", ["127.0.0.1:1", "docker:2", "podman:3"], [], 3),
        (en.VIA_DOCKER_BRIDGE, GW, ["127.0.0.1:1", "docker:2", "podman:3"], [], 2),
        (en.VIA_LOOPBACK, None, ["docker:2", "podman:3", "127.0.0.1:1"], [], 1),
        (en.VIA_PODMAN_BRIDGE, "10.88.0.1", ["127.0.0.1:0", "podman:0"], ["127.0.0.1:5", "10.88.0.1:6"], 6),
    ],
)
def test_sandbox_port_follows_the_way_in(via, gateway, listen, bound, port) -> None:
    from broker.config.listen import parse_listen

    assert da.sandbox_port([parse_listen(e) for e in listen], bound, gateway, via) == port
