"""Asking the container engine on this machine what it is, and what an image runs as.

Only runs the engine's own CLI (`info`, `network inspect`, `image inspect`, `create`/`cp`);
every decision is in sandboxes.engines. A failure becomes an `EngineError` naming the fix.
"""

from __future__ import annotations

import io
import json
import shutil
import subprocess
import tarfile
from dataclasses import dataclass
from typing import Sequence

from broker.sandboxes import engines
from broker.sandboxes.engines import DOCKER, PODMAN, Engine, EngineError

TIMEOUT = 30.0
PASSWD_LIMIT = 1024 * 1024


@dataclass(frozen=True)
class Detected:
    engine: Engine
    program: str  # what to run: `docker` or `podman` (or a path to one)
    podman_gateway: str | None = None  # rootful podman's default network gateway


def _run(argv: Sequence[str], timeout: float = TIMEOUT) -> subprocess.CompletedProcess[bytes]:
    try:
        return subprocess.run(list(argv), capture_output=True, timeout=timeout, check=False,
                              stdin=subprocess.DEVNULL)
    except FileNotFoundError:
        raise EngineError(f"`{argv[0]}` is not installed (not on PATH)") from None
    except subprocess.TimeoutExpired:
        raise EngineError(f"`{' '.join(argv[:3])}` did not answer within {timeout:.0f}s: is the engine "
                          "running?") from None


def _first_line(data: bytes) -> str:
    lines = [ln.strip() for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    return lines[-1][:300] if lines else ""


def kind_of(program: str) -> str:
    """`podman`, or `docker` unless that `docker` is podman's shim (`podman-docker`)."""
    if program.rsplit("/", 1)[-1].startswith(PODMAN):
        return PODMAN
    out = _run([program, "--version"], timeout=10)
    return PODMAN if engines.is_podman_cli(out.stdout.decode("utf-8", "replace")) else DOCKER


def choose_program(requested: str | None) -> str:
    """The engine CLI to use: the one asked for, else `docker` if installed, else `podman`."""
    if requested:
        if requested not in engines.KINDS:
            raise EngineError(f"unknown engine {requested!r}: choose docker or podman")
        if not shutil.which(requested):
            raise EngineError(f"`{requested}` is not installed (not on PATH)")
        return requested
    for name in (DOCKER, PODMAN):
        if shutil.which(name):
            return name
    raise EngineError("no container engine found: install docker or podman (or pass --engine)")


def detect(requested: str | None = None, program: str | None = None) -> Detected:
    """The engine behind `program` (or the `--engine` asked for, or what is installed)."""
    prog = program or choose_program(requested)
    kind = kind_of(prog)
    if requested == PODMAN and kind != PODMAN:
        raise EngineError(f"`{prog}` is docker, not podman")
    argv = [prog, "info", "--format", "json" if kind == PODMAN else "{{json .}}"]
    out = _run(argv)
    if out.returncode != 0:
        why = _first_line(out.stderr) or f"exit status {out.returncode}"
        fix = ("start it (e.g. `sudo systemctl start docker`), or check DOCKER_HOST and your access to "
               "its socket" if kind == DOCKER else "check `podman info` as this user")
        raise EngineError(f"the {kind} engine is not reachable ({why}): {fix}")
    engine = engines.parse_info(out.stdout.decode("utf-8", "replace"))
    gateway = None
    if engine.kind == PODMAN and not engine.rootless:
        net = _run([prog, "network", "inspect", "podman", "--format", "json"])
        gateway = engines.parse_network_gateway(net.stdout.decode("utf-8", "replace")) if net.returncode == 0 else None
    return Detected(engine, prog, gateway)


def image_user(program: str, image: str) -> str | None:
    """The image's `USER` ("" for root), or None when the image is not here."""
    out = _run([program, "image", "inspect", image])
    if out.returncode != 0:
        return None
    try:
        doc = json.loads(out.stdout)
        config = (doc[0] if isinstance(doc, list) else doc).get("Config") or {}
    except (ValueError, IndexError, AttributeError):
        raise EngineError(f"`{program} image inspect {image}` gave something unexpected") from None
    return str(config.get("User") or "")


def pull(program: str, image: str) -> None:
    """Fetch `image` (its progress goes to the terminal), or say why not."""
    try:
        done = subprocess.run([program, "pull", image], stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise EngineError(f"`{program}` is not installed (not on PATH)") from None
    if done.returncode != 0:
        raise EngineError(f"image {image!r} is not here and `{program} pull {image}` failed: build or pull it "
                          "first")


def image_passwd(program: str, image: str) -> str:
    """The image's /etc/passwd, read from a created (never started) container: nothing in the
    image runs, and images without a shell work too."""
    made = _run([program, "create", "--entrypoint", "/nonexistent", image])
    if made.returncode != 0:
        raise EngineError(f"cannot look into image {image!r}: {_first_line(made.stderr)}")
    cid = made.stdout.decode().strip().splitlines()[-1]
    try:
        out = _run([program, "cp", f"{cid}:/etc/passwd", "-"])
    finally:
        _run([program, "rm", "-f", cid])
    if out.returncode != 0:
        return ""
    try:
        with tarfile.open(fileobj=io.BytesIO(out.stdout[: PASSWD_LIMIT * 2])) as tar:
            for member in tar:
                if member.isfile() and member.size <= PASSWD_LIMIT:
                    fh = tar.extractfile(member)
                    return fh.read().decode("utf-8", "replace") if fh else ""
    except tarfile.TarError:
        return ""
    return ""


def container_uid(program: str, image: str, user: str | None = None) -> int:
    """The uid a container of `image` runs as (`user`: a `--user` given on the command line).
    A user name is looked up in the image's /etc/passwd."""
    spec = user if user is not None else image_user(program, image)
    if spec is None:
        pull(program, image)
        spec = image_user(program, image) or ""
    name, _ = engines.parse_user(spec)
    uid = engines.numeric_uid(name)
    if uid is not None:
        return uid
    found = engines.uid_from_passwd(name, image_passwd(program, image))
    if found is None:
        raise EngineError(f"image {image!r} runs as user {name!r}, which its /etc/passwd does not list: pass "
                          "--user UID to the engine")
    return found
