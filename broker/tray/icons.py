"""Tray icons drawn from code, one per icon state (see `broker.tray.menu.ICON_STATES`).

A rounded badge in a colour per state with a white glyph, outlined in a darker shade so it
reads on light and dark panels alike. Shapes only, no fonts, so every machine draws the same
pixels; drawn at 8x and scaled down for clean edges at 16-32 px.
"""

from __future__ import annotations

import math
from collections.abc import Callable

from PIL import Image, ImageDraw

from broker.tray.menu import ERROR, ICON_STATES, OK, PAUSED, REFRESHING_ICON, WARNING

SCALE = 8
WHITE = (255, 255, 255, 255)

# state -> (fill, outline). Hue and glyph both differ, so colour-blind users still tell them apart.
COLOURS: dict[str, tuple[tuple[int, int, int, int], tuple[int, int, int, int]]] = {
    OK: ((46, 157, 79, 255), (20, 90, 42, 255)),
    REFRESHING_ICON: ((47, 127, 216, 255), (22, 70, 130, 255)),
    WARNING: ((235, 160, 0, 255), (140, 90, 0, 255)),
    ERROR: ((214, 54, 54, 255), (120, 24, 24, 255)),
    PAUSED: ((122, 127, 135, 255), (60, 63, 68, 255)),
}


def _check(d: ImageDraw.ImageDraw, s: float) -> None:
    d.line([(0.27 * s, 0.52 * s), (0.43 * s, 0.68 * s), (0.74 * s, 0.33 * s)], fill=WHITE, width=round(0.13 * s), joint="curve")


def _arrows(d: ImageDraw.ImageDraw, s: float) -> None:
    """A clockwise circular arrow: an arc with a gap at the top and a head on its end."""
    width = 0.11 * s
    r = 0.22 * s  # arc centre line
    cx = cy = 0.5 * s
    end = 250  # degrees, PIL's clockwise angles (y points down)
    d.arc([cx - r - width / 2, cy - r - width / 2, cx + r + width / 2, cy + r + width / 2],
          start=-20, end=end, fill=WHITE, width=round(width))
    a = math.radians(end)
    px, py = cx + r * math.cos(a), cy + r * math.sin(a)
    tx, ty = -math.sin(a), math.cos(a)  # clockwise tangent
    rx, ry = math.cos(a), math.sin(a)  # outward radius
    h = 0.15 * s
    d.polygon(
        [(px + tx * h * 1.1, py + ty * h * 1.1), (px + rx * h, py + ry * h), (px - rx * h, py - ry * h)],
        fill=WHITE,
    )


def _bang(d: ImageDraw.ImageDraw, s: float) -> None:
    w = 0.16 * s
    d.rounded_rectangle([0.5 * s - w / 2, 0.2 * s, 0.5 * s + w / 2, 0.58 * s], radius=w / 2, fill=WHITE)
    d.ellipse([0.5 * s - w / 2, 0.65 * s, 0.5 * s + w / 2, 0.65 * s + w], fill=WHITE)


def _cross(d: ImageDraw.ImageDraw, s: float) -> None:
    w = round(0.13 * s)
    d.line([(0.31 * s, 0.31 * s), (0.69 * s, 0.69 * s)], fill=WHITE, width=w)
    d.line([(0.31 * s, 0.69 * s), (0.69 * s, 0.31 * s)], fill=WHITE, width=w)


def _pause(d: ImageDraw.ImageDraw, s: float) -> None:
    w = 0.13 * s
    for x in (0.37 * s, 0.63 * s):
        d.rounded_rectangle([x - w / 2, 0.28 * s, x + w / 2, 0.72 * s], radius=w / 3, fill=WHITE)


GLYPHS: dict[str, Callable[[ImageDraw.ImageDraw, float], None]] = {
    OK: _check,
    REFRESHING_ICON: _arrows,
    WARNING: _bang,
    ERROR: _cross,
    PAUSED: _pause,
}


def icon_image(state: str, size: int = 64) -> Image.Image:
    """The RGBA icon for `state` at `size` x `size` pixels (transparent outside the badge)."""
    if state not in GLYPHS:
        raise ValueError(f"unknown icon state {state!r}; expected one of {ICON_STATES}")
    fill, outline = COLOURS[state]
    s = size * SCALE
    img = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(img)
    margin = 0.03 * s
    d.rounded_rectangle(
        [margin, margin, s - margin, s - margin],
        radius=0.26 * s,
        fill=fill,
        outline=outline,
        width=max(SCALE, round(0.05 * s)),
    )
    GLYPHS[state](d, s)
    return img.reduce(SCALE)  # box filter: no ringing, so the corners stay fully transparent


def app_icon(size: int = 256) -> Image.Image:
    """The application's own icon (launchers, About boxes): the healthy badge."""
    return icon_image(OK, size)
