"""The config file and the provider profiles, read from disk.

Core parses text (`config.settings.parse_config`, `config.profiles.parse_profile`); this module
decides where the files are and reads them. The config file's location comes from
`--config`, then `$INFERENCE_BROKER_CONFIG`, then the platform's user config dir; a missing
default file means all defaults.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Mapping

import platformdirs

from broker.config.settings import APP, Config, parse_config
from broker.common.errors import ConfigError, ProfileError
from broker.config.profiles import Profile, parse_profile


def default_config_path(env: Mapping[str, str] = os.environ) -> Path:
    if env.get("INFERENCE_BROKER_CONFIG"):
        return Path(env["INFERENCE_BROKER_CONFIG"]).expanduser()
    return Path(platformdirs.user_config_dir(APP)) / "config.yaml"


def load_config(path: Path | None = None, env: Mapping[str, str] = os.environ) -> Config:
    """Read the config file, or return defaults when there is none."""
    explicit = path is not None or bool(env.get("INFERENCE_BROKER_CONFIG"))
    path = path or default_config_path(env)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        if explicit:
            raise ConfigError(f"{path}: config file not found") from None
        return Config(path=path)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_config(text, str(path), path)


def builtin_profile_dir() -> Path:
    """Profiles shipped with the broker (the repo's providers/, or the installed copy)."""
    here = Path(__file__).resolve().parent.parent  # broker/
    for candidate in (here / "providers", here.parent / "providers"):
        if candidate.is_dir():
            return candidate
    return here / "providers"


def profile_dirs() -> list[Path]:
    """Where profiles are looked for: the user's own first, then the shipped ones."""
    return [Path(platformdirs.user_config_dir(APP)) / "providers", builtin_profile_dir()]


def find_profile(name: str, search: list[Path]) -> Profile:
    """Load the profile called `name` (or with that alias) from the first directory that has it."""
    seen: list[str] = []
    for directory in search:
        if not directory.is_dir():
            continue
        for path in sorted(directory.glob("*.yaml")):
            profile = parse_profile(path.read_text(encoding="utf-8"), str(path))
            seen.append(profile.name)
            if name == profile.name or name in profile.aliases:
                return profile
    known = ", ".join(sorted(set(seen))) or "none found"
    raise ProfileError(f"no provider profile named {name!r} (known: {known})")


def profile_for(config: Config) -> Profile:
    """The profile `config` names (its `provider`)."""
    return find_profile(config.provider, profile_dirs())
