"""The uid an image's containers run as, looked up with the engine (for `doctor --image`).

A bind-mounted sandbox dir keeps its host owner, so the image's user decides whether Claude
Code inside can read it: `USER` from the image config (empty: root), and for a user name the
image's own `/etc/passwd`, copied out of a created (never started) container.
"""

from __future__ import annotations

import io
import subprocess
import tarfile

from broker.common.errors import BrokerError

TIMEOUT = 60.0


class ImageLookupError(BrokerError):
    title = "Image lookup"


def user_field(user: str) -> tuple[int | None, str | None]:
    """`USER` as (uid, None) when numeric, else (None, name); "" is root."""
    who = user.strip().split(":", 1)[0]
    if not who:
        return 0, None
    return (int(who), None) if who.isdigit() else (None, who)


def passwd_uid(passwd: str, name: str) -> int | None:
    for line in passwd.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[0] == name and fields[2].isdigit():
            return int(fields[2])
    return None


def _engine(engine: str, *args: str) -> subprocess.CompletedProcess[bytes]:
    try:
        done = subprocess.run([engine, *args], capture_output=True, timeout=TIMEOUT, check=False)
    except FileNotFoundError:
        raise ImageLookupError(f"`{engine}` is not installed here") from None
    except subprocess.TimeoutExpired:
        raise ImageLookupError(f"`{engine} {args[0]}` did not answer within {int(TIMEOUT)} s") from None
    if done.returncode != 0:
        said = done.stderr.decode(errors="replace").strip().splitlines()
        first = "".join(ch for ch in (said[0] if said else "") if ch.isprintable())[:200]
        raise ImageLookupError(f"`{engine} {args[0]}` failed: {first or f'exit {done.returncode}'}")
    return done


def image_uid(image: str, engine: str = "docker") -> int:
    """The uid IMAGE's containers run as (raises ImageLookupError saying why not)."""
    if image.startswith("-"):
        raise ImageLookupError(f"{image!r} is not an image name")
    user = _engine(engine, "image", "inspect", "--format", "{{.Config.User}}", image).stdout.decode().strip()
    uid, name = user_field(user)
    if uid is not None:
        return uid
    assert name is not None
    container = _engine(engine, "create", image, "true").stdout.decode().strip()
    try:
        archive = _engine(engine, "cp", f"{container}:/etc/passwd", "-").stdout
    finally:
        subprocess.run([engine, "rm", "-f", container], capture_output=True, timeout=TIMEOUT, check=False)
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        member = next((m for m in tar.getmembers() if m.isfile()), None)
        data = tar.extractfile(member).read(1024 * 1024) if member else b""  # type: ignore[union-attr]
    found = passwd_uid(data.decode(errors="replace"), name)
    if found is None:
        raise ImageLookupError(f"image {image!r} runs as user {name!r}, which its /etc/passwd does not list")
    return found
