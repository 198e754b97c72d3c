"""Small checks for YAML-shaped input whose errors name the file and the key.

Config and provider profiles are written by hand; a message like
`config.yaml: refresh.mode: must be one of own, follow (got "fllow")` saves the reader a hunt.
"""

from __future__ import annotations

from typing import Any, Collection

from broker.common.errors import BrokerError


class Fields:
    """Reads one mapping, checking types and refusing keys nobody asked for."""

    def __init__(self, data: Any, where: str, key_path: str, error: type[BrokerError]) -> None:
        self.where, self.prefix, self.error = where, key_path, error
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise self.fail(key_path or "top level", f"must be a mapping, got {type(data).__name__}")
        self.data = data
        self.seen: set[str] = set()

    def fail(self, key: str, problem: str) -> BrokerError:
        return self.error(f"{self.where}: {key}: {problem}")

    def name(self, key: str) -> str:
        return f"{self.prefix}.{key}" if self.prefix else key

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None, *, required: bool = False) -> Any:
        self.seen.add(key)
        if key not in self.data or self.data[key] is None:
            if required:
                raise self.fail(self.name(key), "is required")
            return default
        value = self.data[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(value, bool) and bool not in kinds:
            raise self.fail(self.name(key), f"must be {_kind_words(kinds)}, got a boolean")
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds):
            raise self.fail(self.name(key), f"must be {_kind_words(kinds)}, got {type(value).__name__}")
        return value

    def choice(self, key: str, choices: Collection[str], default: str) -> str:
        value = self.get(key, str, default)
        if value not in choices:
            raise self.fail(self.name(key), f"must be one of {', '.join(choices)} (got {value!r})")
        return value

    def strings(self, key: str, default: Collection[str] = ()) -> tuple[str, ...]:
        value = self.get(key, list, None)
        if value is None:
            return tuple(default)
        if not all(isinstance(v, str) and v for v in value):
            raise self.fail(self.name(key), "must be a list of non-empty strings")
        return tuple(value)

    def positive(self, key: str, default: float, *, allow_zero: bool = False) -> float:
        value = self.get(key, (int, float), default)
        if value < 0 or (value == 0 and not allow_zero):
            raise self.fail(self.name(key), f"must be a positive number (got {value})")
        return value

    def sub(self, key: str) -> "Fields":
        self.seen.add(key)
        return Fields(self.data.get(key), self.where, self.name(key), self.error)

    def done(self) -> None:
        unknown = sorted(set(map(str, self.data)) - self.seen)
        if unknown:
            known = ", ".join(sorted(self.seen))
            raise self.fail(self.name(unknown[0]), f"unknown key (known here: {known})")


def _kind_words(kinds: tuple[type, ...]) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false",
             list: "a list", dict: "a mapping"}
    return " or ".join(names.get(k, k.__name__) for k in kinds)
