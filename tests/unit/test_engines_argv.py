"""`exec`'s reading of an engine command line: where `run` is, which word is the image, what
the user chose; the wiring goes in right after `run`, every word kept whole."""

from __future__ import annotations

import pytest

from broker.sandboxes.engines_argv import RunArgvError, parse

HOME = "/Users/me/Library/Application Support/inference-broker/sandboxes/box"  # a space on purpose


@pytest.mark.parametrize(
    "argv, image, chosen",
    [
        (["docker", "run", "img"], "img", {}),
        (["docker", "run", "--rm", "-it", "-v", "/p:/workspace", "-w", "/workspace", "my-image", "claude"],
         "my-image", {"workdir": "/workspace"}),
        (["podman", "run", "-dit", "--name=x", "-u", "1000:1000", "img", "sh", "-c", "id"], "img",
         {"user": "1000:1000"}),
        (["docker", "container", "run", "-eFOO=1", "-u1000", "img"], "img", {"user": "1000"}),
        (["docker", "--context", "ctx", "run", "--user=node", "--network", "host", "img"], "img",
         {"user": "node", "network": "host"}),
        (["podman", "run", "--userns", "keep-id", "--rm", "--", "img", "--rm"], "img", {"userns": "keep-id"}),
        (["/usr/bin/podman", "run", "--env", "A=a b", "--workdir=/w", "img"], "img", {"workdir": "/w"}),
        (["docker", "run", "--unknown-valued", "x", "img"], "img", {}),  # unknown: takes a value
    ],
)
def test_finds_the_image_and_the_choices(argv: list[str], image: str, chosen: dict[str, str]) -> None:
    parsed = parse(argv)
    assert parsed.image == image and parsed.chosen == chosen


def test_wiring_goes_right_after_run_with_words_whole() -> None:
    parsed = parse(["docker", "run", "--rm", "img", "claude", "--continue"])
    line = parsed.with_options(["--mount", f"type=bind,src={HOME},dst=/opt/x", "-e", "A=b c"])
    assert line == ["docker", "run", "--mount", f"type=bind,src={HOME},dst=/opt/x", "-e", "A=b c", "--rm", "img",
                    "claude", "--continue"]


@pytest.mark.parametrize(
    "argv, words",
    [
        ([], "no engine command"),
        (["docker", "ps"], "not `docker ps`"),
        (["docker"], "no `run`"),
        (["docker", "run", "--rm"], "no image"),
        (["docker", "run", "-e"], "has no value"),
        (["docker", "run", "--name"], "has no value"),
    ],
)
def test_refuses_what_it_cannot_wire(argv: list[str], words: str) -> None:
    with pytest.raises(RunArgvError) as err:
        parse(argv)
    assert words in err.value.message and "inference-broker exec NAME --" in err.value.message
