"""Docker bridge discovery: the parser on captured `ip` output, then real bridges (root)."""

from __future__ import annotations

import itertools
import os
import subprocess
from typing import Iterator

import pytest

from broker.sandboxes import bridges
from tests.support import require_root, require_tools

# Captured from `ip -j -4 addr show dev docker0` (iproute2 6.1) with dockerd running.
DOCKER0 = (
    '[{"ifindex":4,"ifname":"docker0","flags":["NO-CARRIER","BROADCAST","MULTICAST","UP"],'
    '"mtu":1500,"qdisc":"noqueue","operstate":"DOWN","group":"default","addr_info":[{"family":'
    '"inet","local":"172.17.0.1","prefixlen":16,"broadcast":"172.17.255.255","scope":"global",'
    '"label":"docker0","valid_life_time":4294967295,"preferred_life_time":4294967295}]}]'
)
# A bridge that exists but has no IPv4 yet.
NO_ADDR = '[{"ifindex":7,"ifname":"br0","flags":["BROADCAST","MULTICAST"],"addr_info":[]}]'


@pytest.mark.parametrize(
    "text, expected",
    [
        (DOCKER0, "172.17.0.1"),
        (NO_ADDR, None),
        ("", None),
        ("[]", None),  # `ip -j` prints this for an interface with only IPv6
        ("not json", None),
        ('{"unexpected": "shape"}', None),
        ('[{"addr_info":[{"family":"inet","local":"127.0.0.1","scope":"host"},'
         '{"family":"inet","local":"10.9.0.1","scope":"global"}]}]', "10.9.0.1"),
        ('[{"addr_info":[{"family":"inet","local":"nonsense"}]}]', None),
    ],
)
def test_parse_ip_addr_json(text: str, expected: str | None) -> None:
    assert bridges.parse_ip_addr_json(text) == expected


_names = itertools.count()


def _unique() -> tuple[str, str]:
    """A bridge name (<=15 chars) and a link-local /30 address unique to this process."""
    n = next(_names)
    pid = os.getpid()
    return f"ibt{pid % 100000}x{n}", f"169.254.{1 + pid % 250}.{4 * (n % 60) + 1}"


@pytest.fixture
def bridge() -> Iterator[tuple[str, str]]:
    """A name and address for a real bridge the test may create; deleted afterwards."""
    require_root()
    require_tools("ip")
    name, address = _unique()
    yield name, address
    subprocess.run(["ip", "link", "del", name], capture_output=True, check=False)


def _create(name: str, address: str) -> None:
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True)
    subprocess.run(["ip", "addr", "add", f"{address}/30", "dev", name], check=True)


def test_missing_bridge_is_none(bridge: tuple[str, str]) -> None:
    name, _ = bridge
    assert bridges.bridge_gateway(name) is None
    assert bridges._via_ioctl(name) is None


def test_real_bridge_found_by_ip_and_ioctl(bridge: tuple[str, str]) -> None:
    name, address = bridge
    _create(name, address)
    assert bridges.bridge_gateway(name) == address
    assert bridges._via_ioctl(name) == address


def test_gateways_lists_the_bridges_that_exist(bridge: tuple[str, str]) -> None:
    name, address = bridge
    assert bridges.gateways([name, "ib-no-such-link"]) == {}
    _create(name, address)
    assert bridges.gateways([name, "ib-no-such-link"]) == {name: address}
