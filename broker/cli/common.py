"""What the subcommands share: loading config, talking to a running broker."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from broker.runtime import control_socket
from broker.config.files import load_config
from broker.config.settings import Config
from broker.common.errors import BrokerNotRunning


def config_of(args: argparse.Namespace) -> Config:
    return load_config(Path(args.config).expanduser() if getattr(args, "config", None) else None)


def ask(config: Config, payload: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    """One control request to the running broker (raises BrokerNotRunning if there is none)."""
    return control_socket.request(config.control_socket, payload, timeout)


def ask_or_none(config: Config, payload: dict[str, Any]) -> dict[str, Any] | None:
    try:
        return ask(config, payload)
    except BrokerNotRunning:
        return None
