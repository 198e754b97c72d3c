"""Text a sandbox named (a model, a client), made safe for where a person reads it.

On a terminal, control characters are commands: ESC starts an escape sequence (retitle the
window, clear the screen, rewrite earlier lines), BEL rings, NUL and the C1 range do worse on
some terminals, and the bidi controls (U+202E and friends) make text read in a different order
than it is. In a spreadsheet, a CSV cell that starts with `=`, `+`, `-`, `@`, a tab or a
carriage return is a formula (`=HYPERLINK(...)` sends data away when clicked).
"""

from __future__ import annotations

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def for_terminal(text: str) -> str:
    """`text` with every non-printable character (controls, bidi and other format characters,
    line separators) shown as a Python escape such as `\\x1b` or `\\u202e`: visible, inert."""
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ch.encode("unicode_escape").decode("ascii") for ch in text)


def for_csv(text: str) -> str:
    """A CSV cell a spreadsheet shows as text: safe for the terminal too, and a leading
    formula character quoted with `'` (OWASP's advice for CSV injection)."""
    safe = for_terminal(text)
    return "'" + safe if text.startswith(FORMULA_START) else safe
