"""Reading a `docker run` / `podman run` command line, to insert a sandbox's wiring into it.

`inference-broker exec NAME -- docker run [options] IMAGE [command]` must know where `run` is
(the wiring goes right after it), which word is the image (to look up its user), and what the
user already chose (`--user`, `--userns`, `--network`, `--workdir`). Options that take no value
are listed here; any other option is taken to have one (`--opt=value` is always safe). Nothing is
ever split on spaces: each argv word stays one word.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.common.errors import BrokerError

# `run` options of docker and podman that take no value (cobra booleans; `--flag=false` also works).
BOOL_LONG = frozenset({
    "--detach", "--interactive", "--tty", "--rm", "--privileged", "--init", "--read-only", "--publish-all",
    "--no-healthcheck", "--oom-kill-disable", "--sig-proxy", "--disable-content-trust", "--quiet", "--help",
    "--replace", "--rmi", "--env-host", "--http-proxy", "--no-hosts", "--passwd", "--read-only-tmpfs",
    "--rootfs", "--tls-verify", "--unsetenv-all", "--use-api-version",
})
BOOL_SHORT = frozenset("ditPq")
# Global options (before `run`) that take a value.
GLOBAL_VALUED = frozenset({
    "-H", "--host", "-c", "--context", "--config", "-l", "--log-level", "--tlscacert", "--tlscert", "--tlskey",
    "--connection", "--url", "--identity", "--root", "--runroot", "--storage-driver", "--storage-opt",
    "--cgroup-manager", "--runtime", "--network-cmd-path", "--events-backend", "--tmpdir", "--module",
    "--imagestore", "--conmon", "--hooks-dir", "--network-config-dir", "--volumepath", "--ssh",
})
WATCHED = {"-u": "user", "--user": "user", "--userns": "userns", "--network": "network", "--net": "network",
           "-w": "workdir", "--workdir": "workdir"}


class RunArgvError(BrokerError):
    title = "Nothing started"


@dataclass
class RunArgv:
    argv: list[str]
    run_at: int  # index of the word `run`
    image_at: int
    chosen: dict[str, str] = field(default_factory=dict)  # user / userns / network / workdir as given

    @property
    def program(self) -> str:
        return self.argv[0]

    @property
    def image(self) -> str:
        return self.argv[self.image_at]

    def with_options(self, options: list[str]) -> list[str]:
        """The command line with `options` right after `run`."""
        return [*self.argv[: self.run_at + 1], *options, *self.argv[self.run_at + 1:]]


USAGE = "write: inference-broker exec NAME -- docker run [options] IMAGE [command] (or podman run)"


def _find_run(argv: list[str]) -> int:
    i = 1
    while i < len(argv):
        word = argv[i]
        if word in ("run",):
            return i
        if word == "container" and i + 1 < len(argv) and argv[i + 1] == "run":
            return i + 1
        if word.startswith("-"):
            i += 2 if (word in GLOBAL_VALUED and "=" not in word) else 1
            continue
        raise RunArgvError(f"exec starts containers with `run`, not `{argv[0]} {word}`: {USAGE}")
    raise RunArgvError(f"no `run` in the command: {USAGE}")


def parse(argv: list[str]) -> RunArgv:
    if not argv:
        raise RunArgvError(f"no engine command after `--`: {USAGE}")
    run_at = _find_run(argv)
    chosen: dict[str, str] = {}
    i = run_at + 1
    while i < len(argv):
        word = argv[i]
        if word == "--":
            i += 1
            break
        if not word.startswith("-") or word == "-":
            break
        if word.startswith("--"):
            name, eq, value = word.partition("=")
            if not eq and name not in BOOL_LONG:
                if i + 1 >= len(argv):
                    raise RunArgvError(f"option {name} has no value: {USAGE}")
                value = argv[i + 1]
                i += 1
            if name in WATCHED:
                chosen[WATCHED[name]] = value
            i += 1
            continue
        # short options, possibly bundled (-it, -dit) and with an attached value (-eFOO=1, -u1000)
        j = 1
        while j < len(word):
            ch = word[j]
            if ch in BOOL_SHORT:
                j += 1
                continue
            value = word[j + 1:]
            if not value:
                if i + 1 >= len(argv):
                    raise RunArgvError(f"option -{ch} has no value: {USAGE}")
                value = argv[i + 1]
                i += 1
            if f"-{ch}" in WATCHED:
                chosen[WATCHED[f"-{ch}"]] = value.lstrip("=")
            break
        i += 1
    if i >= len(argv):
        raise RunArgvError(f"no image in the command: {USAGE}")
    return RunArgv(list(argv), run_at, i, chosen)
