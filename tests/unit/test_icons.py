"""Icons: every state renders at tray sizes, with transparency, and no two look alike."""

from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image, ImageChops, ImageStat

from broker.tray.menu import ICON_STATES
from broker.tray.icons import app_icon, icon_image

ROOT = Path(__file__).resolve().parents[2]
SIZES = (16, 22, 32)


@pytest.mark.parametrize("size", SIZES + (64,))
@pytest.mark.parametrize("state", ICON_STATES)
def test_renders_rgba_with_transparent_corners_and_opaque_badge(state: str, size: int) -> None:
    img = icon_image(state, size)
    assert img.size == (size, size) and img.mode == "RGBA"
    alpha = img.getchannel("A")
    assert alpha.getpixel((0, 0)) == 0 and alpha.getpixel((size - 1, size - 1)) == 0
    assert alpha.getpixel((size // 2, size // 2)) == 255
    assert alpha.getpixel((size // 2, 2)) == 255  # the badge fills the square, not a dot in it


@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("state", ICON_STATES)
def test_glyph_is_visible(state: str, size: int) -> None:
    """Enough near-white pixels inside the badge that the glyph survives at 16 px."""
    light = icon_image(state, size).convert("L").point(lambda v: 255 if v > 200 else 0)
    assert light.histogram()[255] >= size * size * 0.045


@pytest.mark.parametrize("size", SIZES)
def test_states_are_visually_distinct(size: int) -> None:
    imgs = {s: icon_image(s, size) for s in ICON_STATES}
    for a, b in itertools.combinations(ICON_STATES, 2):
        diff = ImageChops.difference(imgs[a].convert("RGB"), imgs[b].convert("RGB"))
        assert max(ImageStat.Stat(diff).mean) > 25, (a, b)  # per-channel mean difference, 0-255


@pytest.mark.parametrize("background", [(245, 245, 245), (30, 30, 30)])
@pytest.mark.parametrize("state", ICON_STATES)
def test_badge_stands_out_on_light_and_dark_panels(state: str, background: tuple[int, int, int]) -> None:
    panel = Image.new("RGBA", (22, 22), background + (255,))
    panel.alpha_composite(icon_image(state, 22))
    diff = ImageChops.difference(panel.convert("RGB"), Image.new("RGB", (22, 22), background))
    assert max(ImageStat.Stat(diff).mean) > 40


def test_unknown_state_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown icon state"):
        icon_image("sparkly")


def test_app_icon_is_large() -> None:
    assert app_icon().size == (256, 256)


def test_make_icons_writes_every_state(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "make_icons.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, check=True,
    ).stdout.split()
    assert sorted(Path(p).name for p in out) == sorted([f"icon-{s}.png" for s in ICON_STATES] + ["app-icon.png"])
    for state in ICON_STATES:
        written = Image.open(tmp_path / f"icon-{state}.png")
        assert written.size == (64, 64) and written.mode == "RGBA"


@pytest.mark.parametrize("state", ICON_STATES)
def test_committed_assets_match_the_code(state: str) -> None:
    """assets/ is generated: a stale PNG means someone forgot `make icons`."""
    committed = Image.open(ROOT / "assets" / f"icon-{state}.png").convert("RGBA")
    assert ImageChops.difference(committed, icon_image(state, 64)).getbbox() is None
