"""`doctor`'s decisions about a container's user and the port it suggests, without a container."""

from __future__ import annotations

import pytest

from broker.cli.doctor_wiring import readable_by, suggested_port
from broker.config.listen import parse_listen


@pytest.mark.parametrize("uid, owner, mode, need, ok", [
    (1000, 1000, 0o700, 0o700, True),
    (1000, 0, 0o700, 0o700, False),  # root's dir, a `node` container: onboarding, "Unable to connect"
    (0, 1000, 0o700, 0o700, True),  # root in the container reads anything
    (1000, 0, 0o755, 0o500, True),  # other users may read and enter
    (1000, 0, 0o755, 0o700, False),  # but not write
    (1000, 1000, 0o400, 0o600, False),
])
def test_readable_by(uid: int, owner: int, mode: int, need: int, ok: bool) -> None:
    assert readable_by(uid, owner, mode, need) is ok


def test_the_suggested_port_is_the_one_configured() -> None:
    assert suggested_port([parse_listen("127.0.0.1:9001")]) == 9001
    assert suggested_port([parse_listen("127.0.0.1:0")]) == 8765  # the README's


def test_a_plan_name_planted_by_the_sandbox_is_not_repeated() -> None:
    from broker.cli.doctor_wiring import plan_words
    from broker.sandboxes.claude_config import Plan

    assert plan_words(Plan("max")) == "the max plan" and plan_words(Plan()) == 'no plan ("Claude API")'
    assert plan_words(Plan("\x1b[2Jmax")) == "a plan with an unreadable name"
    assert plan_words(Plan("x" * 500)) == "a plan with an unreadable name"


@pytest.mark.parametrize("user, parsed", [("", (0, None)), ("1000", (1000, None)), ("1000:1000", (1000, None)),
                                          ("node", (None, "node")), ("node:staff", (None, "node")),
                                          ("0:0", (0, None))])
def test_image_user_field(user: str, parsed: tuple) -> None:
    from broker.cli.image_user import user_field

    assert user_field(user) == parsed


def test_passwd_uid() -> None:
    from broker.cli.image_user import passwd_uid

    passwd = "root:x:0:0:root:/root:/bin/sh\nnode:x:1000:1000::/home/node:/bin/sh\nbad line\n"
    assert passwd_uid(passwd, "node") == 1000 and passwd_uid(passwd, "root") == 0
    assert passwd_uid(passwd, "nobody") is None
