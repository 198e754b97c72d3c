"""`sandbox check`'s reading of what the container's client said, for each way to fail (the
e2e test injects them for real; these pin the wording of each client)."""

from __future__ import annotations

import pytest

from broker.sandboxes.engines_check import diagnose

HEAD = "IB uid 0\nIB addr 172.17.0.1\n"


def last(output: str, symbol: str | None = "docker"):
    steps = diagnose(output, name="box", host_address="172.17.0.1", port=8765, symbol=symbol)
    return steps[-1]


@pytest.mark.parametrize(
    "output, step, ok",
    [
        ("IB uid 1000\nIB dir-unreadable\n", "config dir", False),
        ("IB uid 0\nIB resolve-failed inference.local\n", "name resolution", False),
        (HEAD + "IB tool none\n", "client", False),
        # busybox wget
        (HEAD + "IB tool wget\nwget: can't connect to remote host (172.17.0.1): Connection refused\nIB rc 1\n",
         "listening", False),
        (HEAD + "IB tool wget\nwget: can't connect to remote host (172.17.0.1): Network is unreachable\nIB rc 1\n",
         "route", False),
        (HEAD + "IB tool wget\nIB rc 143\n", "route", False),  # timed out, killed by `timeout`
        (HEAD + "IB tool wget\n  HTTP/1.1 401 Unauthorized\nwget: server returned error: HTTP/1.1 401 Unauthorized\n"
         "IB rc 1\n", "key", False),
        (HEAD + "IB tool wget\n  HTTP/1.1 200 OK\nIB rc 0\n", "key", True),
        # GNU wget
        (HEAD + "IB tool wget\nConnecting to inference.local... failed: No route to host.\nIB rc 4\n", "route", False),
        (HEAD + "IB tool wget\n  HTTP/1.1 401 Unauthorized\nERROR 401: Unauthorized.\nIB rc 8\n", "key", False),
        # curl
        (HEAD + "IB tool curl\ncurl: (7) Failed to connect to inference.local port 8765: Connection refused\n"
         "IB status 000\nIB rc 7\n", "listening", False),
        (HEAD + "IB tool curl\nIB status 401\nIB rc 0\n", "key", False),
        (HEAD + "IB tool curl\nIB status 200\nIB rc 0\n", "key", True),
    ],
)
def test_the_failing_step_is_named(output: str, step: str, ok: bool) -> None:
    got = last(output)
    assert (got.name, got.ok) == (step, ok)
    assert ok or got.fix


def test_nothing_listening_names_the_listen_entry() -> None:
    refused = HEAD + "IB tool wget\nwget: can't connect to remote host: Connection refused\n"
    assert "add `docker:8765` to `listen`" in last(refused).fix
    assert "127.0.0.1:8765" in last(refused, symbol=None).fix


def test_a_wrong_address_is_named_on_the_route_step() -> None:
    out = "IB uid 0\nIB addr 10.0.0.9\nIB tool wget\nwget: can't connect: No route to host\n"
    assert "should be 172.17.0.1" in last(out).fix


def test_the_uid_goes_into_the_fix() -> None:
    assert "--uid 1000" in last("IB uid 1000\nIB dir-unreadable\n").fix
