"""Each sandbox's own Claude Code config dir, under the broker's state dir: written, owned, removed.

`STATE/sandboxes/NAME/` is mounted into the sandbox as Claude Code's `CLAUDE_CONFIG_DIR`. The
broker writes two files there (the stand-in login holding the sandbox key, and `.claude.json`);
Claude Code keeps its own state next to them (sessions, history), so a restarted container of
the same sandbox finds its conversations again. Files are 0600 and the dir 0700, owned by the
user the container runs as (`uid`): a bind mount shows host ownership as is, so an image that
runs as `node` (uid 1000) needs the files to be uid 1000's.
"""

from __future__ import annotations

import os
import shutil
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

from broker.common.atomic_files import write_private
from broker.sandboxes.key_store import check_name
from broker.sandboxes import claude_config as cc
from broker.sandboxes.tree_owner import chown_tree
from broker.common.errors import BrokerError

SANDBOXES = "sandboxes"
MAX_READ = 16 * 1024 * 1024  # Claude Code's `.claude.json` grows with projects, not to this


class SandboxConfigError(BrokerError):
    title = "Sandbox config"


def sandbox_dir(state_dir: Path, name: str) -> Path:
    return Path(state_dir) / SANDBOXES / check_name(name)


def write(state_dir: Path, name: str, key: str, plan: cc.Plan, trusted: Iterable[str] = (),
          uid: int | None = None) -> Path:
    """Create or update NAME's dir with `key`; Claude Code's own files there are kept."""
    return prepare(state_dir, name, plan, trusted, uid).commit(key)


@dataclass(frozen=True)
class Prepared:
    """NAME's dir, read and made ready for a key: only the two small writes are left."""

    path: Path
    owner: int | None
    plan: cc.Plan
    config: bytes

    def commit(self, key: str) -> Path:
        _clear_planted(self.path, (cc.CREDENTIALS_FILE, cc.CONFIG_FILE))  # again: it may have made one since
        # The sandbox writes into this dir: never follow a link it may have planted there.
        write_private(self.path / cc.CREDENTIALS_FILE, cc.dumps(cc.credentials_doc(key, self.plan)),
                      owner=self.owner, follow=False)
        write_private(self.path / cc.CONFIG_FILE, self.config, owner=self.owner, follow=False)
        os.chmod(self.path, 0o700)
        return self.path


def prepare(state_dir: Path, name: str, plan: cc.Plan, trusted: Iterable[str] = (),
            uid: int | None = None) -> Prepared:
    """Everything about NAME's dir that can fail, done before a key is issued or rotated (so a
    failure leaves the old key valid and in place): read what the sandbox left there as
    untrusted, hand the tree to the container user, clear what stands where the broker's
    files go."""
    root = Path(state_dir) / SANDBOXES
    root.mkdir(parents=True, exist_ok=True, mode=0o700)
    path = sandbox_dir(state_dir, name)
    path.mkdir(mode=0o700, exist_ok=True)
    owner = _owner_for(path, uid)
    existing = cc.parse_config(_read_own(path / cc.CONFIG_FILE))
    config = cc.dumps(cc.config_doc(existing, trusted))
    if owner is not None:
        chown_tree(path, owner)  # first: a running Claude Code never meets a file it cannot read
    _clear_planted(path, (cc.CREDENTIALS_FILE, cc.CONFIG_FILE))
    return Prepared(path, owner, plan, config)


def _clear_planted(path: Path, names: Iterable[str]) -> None:
    """Remove a directory the sandbox made where the broker writes a file (a rename cannot
    replace it); files, links and FIFOs there are simply replaced by the rename."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        for name in names:
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            except FileNotFoundError:
                continue
            if stat.S_ISDIR(st.st_mode):
                shutil.rmtree(name, dir_fd=fd)  # fd-based: follows no link inside it
    finally:
        os.close(fd)


def read_key(state_dir: Path, name: str) -> str | None:
    """The key written into NAME's stand-in login, or None (missing, planted link, not ours)."""
    return cc.stand_in_key(_read_own(sandbox_dir(state_dir, name) / cc.CREDENTIALS_FILE))


def _read_own(path: Path, limit: int = MAX_READ) -> str:
    """A regular file's text, not following a symlink (a sandbox could point one at a host
    secret for the broker to copy in); "" when missing, a link, not a regular file, or
    larger than `limit` (the sandbox wrote it: such a file is replaced, never read whole)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_size > limit:
            return ""
        chunks, size = [], 0
        while chunk := os.read(fd, min(1 << 20, limit + 1 - size)):
            chunks.append(chunk)
            size += len(chunk)
            if size > limit:  # grew while read
                return ""
        return b"".join(chunks).decode("utf-8", "replace")
    finally:
        os.close(fd)


def check_uid(uid: int | None) -> None:
    """Refuse, before any key is issued, a container uid this process cannot hand files to."""
    me = os.geteuid()
    if uid is not None and uid != me and me != 0:
        raise SandboxConfigError(
            f"the container user (uid {uid}) cannot read files of uid {me}, and only root can give "
            f"them away: run the container as you (`docker run --user {me}:{os.getegid()} …`), or "
            "leave out --uid")


def _owner_for(path: Path, uid: int | None) -> int | None:
    """The uid to hand the tree to: the one asked for, else whoever owns it already."""
    check_uid(uid)
    me, now = os.geteuid(), path.stat().st_uid
    want = uid if uid is not None else now
    if want == me and now == me:
        return None
    check_uid(want)
    return want


def exists(state_dir: Path, name: str) -> bool:
    return (sandbox_dir(state_dir, name) / cc.CREDENTIALS_FILE).exists()


def remove(state_dir: Path, name: str) -> bool:
    """Delete NAME's dir (key and Claude Code's state): a revoked sandbox keeps nothing."""
    path = sandbox_dir(state_dir, name)
    if not path.exists():
        return False
    shutil.rmtree(path)
    return True


def remove_all(state_dir: Path) -> int:
    root = Path(state_dir) / SANDBOXES
    if not root.exists():
        return 0
    names = [p.name for p in root.iterdir() if p.is_dir()]
    for name in names:
        shutil.rmtree(root / name, ignore_errors=True)
    return len(names)


def follow_plan(state_dir: Path, plan: cc.Plan) -> list[str]:
    """Show `plan` in every sandbox's stand-in login that shows another, keeping its key and
    owner; the names updated. Called when the broker adopts a login (a sandbox made before
    `claude /login` would otherwise say "Claude API" until its key is rotated)."""
    root = Path(state_dir) / SANDBOXES
    updated: list[str] = []
    failed: list[str] = []
    for path in sorted(root.iterdir()) if root.is_dir() else []:
        creds = path / cc.CREDENTIALS_FILE
        doc = cc.with_plan(_read_own(creds), plan) if path.is_dir() and not path.is_symlink() else None
        if doc is None:
            continue
        try:
            owner = path.stat().st_uid
            write_private(creds, cc.dumps(doc), owner=None if owner == os.geteuid() else owner, follow=False)
            updated.append(path.name)
        except OSError as exc:
            failed.append(f"{path.name} ({exc.strerror or exc})")
    if failed:
        raise SandboxConfigError(f"could not show the plan in sandbox(es) {', '.join(failed)}")
    return updated
