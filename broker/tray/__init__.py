"""The tray face: a pystray view over the service (`view`), the backend pystray picked
(`backend`), desktop chores (`desktop`) and the icons drawn from code (`icons`)."""

from broker.tray.backend import display_available
from broker.tray.view import Tray, run_tray

__all__ = ["Tray", "display_available", "run_tray"]
