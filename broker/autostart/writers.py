"""Launch at login: one front over a writer per OS.

macOS: a LaunchAgent plist in ~/Library/LaunchAgents (RunAtLoad). Linux and other XDG
desktops: a `.desktop` file in $XDG_CONFIG_HOME/autostart. Windows: a value under
HKCU\\...\\CurrentVersion\\Run. The file formats are pure functions, tested by parsing
them back; the front only decides where they go and touches the disk when asked to.
"""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

from broker.config.files import default_config_path
from broker.config.settings import Config
from broker.common.errors import BrokerError

log = logging.getLogger(__name__)

LABEL = "com.inference-broker.agent"
APP_NAME = "inference-broker"
DESKTOP_FILE = "inference-broker.desktop"
RUN_KEY = r"Software\Microsoft\Windows\CurrentVersion\Run"

# Desktop Entry spec, "The Exec key": characters that force an argument into double quotes,
# and the ones that must be backslash-escaped inside them.
_EXEC_RESERVED = set(" \t\n\"'\\><~|&;$*?#()`")
_EXEC_ESCAPED_IN_QUOTES = set('"`$\\')


class AutostartError(BrokerError):
    title = "Launch at login"


def broker_argv(config: str | os.PathLike[str] | None = None, python: str | None = None) -> list[str]:
    """The command that starts the broker at login: this interpreter, by absolute path."""
    argv = [os.path.abspath(python or sys.executable), "-m", "broker"]
    if config is not None:
        argv += ["--config", os.path.abspath(config)]
    return argv + ["run"]


def launch_agent_plist(argv: Sequence[str], log_path: str | os.PathLike[str]) -> bytes:
    """A launchd agent that runs `argv` once at login, logging to `log_path`."""
    import plistlib  # noqa: PLC0415 - macOS only; it brings in an XML parser the broker needs nowhere else

    return plistlib.dumps(
        {
            "Label": LABEL,
            "ProgramArguments": list(argv),
            "RunAtLoad": True,
            "KeepAlive": False,
            "ProcessType": "Interactive",
            "StandardOutPath": os.fspath(log_path),
            "StandardErrorPath": os.fspath(log_path),
        }
    )


def _exec_arg(arg: str) -> str:
    if "\n" in arg or "\r" in arg:
        raise AutostartError(f"cannot put a line break into a desktop entry's Exec: {arg!r}")
    arg = arg.replace("%", "%%")  # field codes
    if arg and not _EXEC_RESERVED & set(arg):
        return arg
    return '"' + "".join("\\" + c if c in _EXEC_ESCAPED_IN_QUOTES else c for c in arg) + '"'


def exec_value(argv: Sequence[str]) -> str:
    """`argv` as a desktop entry Exec value: quoted per argument, then string-escaped."""
    line = " ".join(_exec_arg(a) for a in argv)
    return line.replace("\\", "\\\\")  # the string-value escape applies on top of quoting


def desktop_entry(argv: Sequence[str]) -> str:
    """An XDG autostart entry that runs `argv` when the desktop session starts."""
    return "\n".join(
        [
            "[Desktop Entry]",
            "Type=Application",
            f"Name={APP_NAME}",
            "Comment=Lend your Claude subscription to local sandboxes",
            f"Exec={exec_value(argv)}",
            "Terminal=false",
            "X-GNOME-Autostart-enabled=true",
            "",
        ]
    )


def run_key_value(argv: Sequence[str]) -> str:
    """The Windows Run value: one command line, quoted the way CreateProcess splits it."""
    return subprocess.list2cmdline(list(argv))


class Autostart:
    """Enable, disable and inspect launch at login for one user.

    `system` is `platform.system()`'s answer ("Darwin", "Linux", "Windows", ...); `home`
    and `env` say where that user's files live. The constructor touches nothing.
    """

    def __init__(
        self,
        system: str,
        home: Path,
        env: Mapping[str, str],
        *,
        argv: Sequence[str] | None = None,
        state_dir: Path | None = None,
    ) -> None:
        self.system = system
        self.home = Path(home)
        self.env = env
        self.argv = list(argv) if argv is not None else broker_argv()
        self.state_dir = state_dir

    @classmethod
    def here(cls, *, argv: Sequence[str] | None = None, state_dir: Path | None = None) -> Autostart:
        """The front for the current user on this machine."""
        return cls(platform.system(), Path.home(), os.environ, argv=argv, state_dir=state_dir)

    @classmethod
    def for_config(cls, config: Config) -> Autostart:
        """The one login item for a broker run with `config`: the tray's checkbox and
        `autostart enable` both write this. A login item has none of this shell's
        environment, so a config file other than the default one is named on its command line."""
        path = config.path
        explicit = path if path is not None and path != default_config_path({}) else None
        return cls.here(argv=broker_argv(explicit), state_dir=config.state_dir)

    def location(self) -> str:
        """Where the login item lives: a file path, or the registry key and value name."""
        if self.system == "Windows":
            return f"HKCU\\{RUN_KEY}\\{APP_NAME}"
        return str(self._path())

    def is_enabled(self) -> bool:
        if self.system == "Windows":
            return self._read_run_value() is not None
        return self._path().is_file()

    def enable(self) -> None:
        if self.system == "Windows":
            self._write_run_value(run_key_value(self.argv))
        elif self.system == "Darwin":
            state_dir = self.state_dir or self.home / "Library" / "Application Support" / APP_NAME
            state_dir.mkdir(parents=True, exist_ok=True)  # launchd does not create it
            self._write(launch_agent_plist(self.argv, state_dir / "launchd.log"))
        else:
            self._write(desktop_entry(self.argv).encode())
        log.info("launch at login enabled: %s", self.location())

    def disable(self) -> None:
        if self.system == "Windows":
            self._delete_run_value()
        else:
            self._path().unlink(missing_ok=True)
        log.info("launch at login disabled: %s", self.location())

    # -- files (macOS, XDG) ------------------------------------------------------------

    def _path(self) -> Path:
        if self.system == "Darwin":
            return self.home / "Library" / "LaunchAgents" / f"{LABEL}.plist"
        config_home = self.env.get("XDG_CONFIG_HOME") or ""
        base = Path(config_home) if os.path.isabs(config_home) else self.home / ".config"
        return base / "autostart" / DESKTOP_FILE

    def _write(self, data: bytes) -> None:
        path = self._path()
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as exc:
            raise AutostartError(f"could not write {path}: {exc.strerror or exc}") from exc

    # -- registry (Windows) ------------------------------------------------------------

    def _winreg(self):  # noqa: ANN202 - the module exists only on Windows
        try:
            import winreg
        except ImportError as exc:
            raise AutostartError("the Windows registry is not available on this system") from exc
        return winreg

    def _read_run_value(self) -> str | None:
        winreg = self._winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                return str(winreg.QueryValueEx(key, APP_NAME)[0])
        except FileNotFoundError:
            return None

    def _write_run_value(self, value: str) -> None:
        winreg = self._winreg()
        try:
            with winreg.CreateKey(winreg.HKEY_CURRENT_USER, RUN_KEY) as key:
                winreg.SetValueEx(key, APP_NAME, 0, winreg.REG_SZ, value)
        except OSError as exc:
            raise AutostartError(f"could not write the Run key: {exc}") from exc

    def _delete_run_value(self) -> None:
        winreg = self._winreg()
        try:
            with winreg.OpenKey(winreg.HKEY_CURRENT_USER, RUN_KEY, 0, winreg.KEY_SET_VALUE) as key:
                winreg.DeleteValue(key, APP_NAME)
        except FileNotFoundError:
            pass
