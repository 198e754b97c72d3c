"""What a face (tray, control socket) can ask the running service to do.

Faces name actions by these ids, never by a menu label's text.
"""

from __future__ import annotations

import enum


class Action(str, enum.Enum):
    REFRESH = "refresh"  # force a token refresh now
    PAUSE = "pause"  # all sandbox access off, keys kept, streams in flight ended
    RESUME = "resume"
    REVOKE_SANDBOX = "revoke_sandbox"  # arg: sandbox name; ends its streams in flight
    REVOKE_ALL = "revoke_all"  # forget every sandbox key, end every stream
    SET_AUTOSTART = "set_autostart"  # arg: "on" | "off"
    QUIT = "quit"
    # Handled by the face itself (they touch the desktop, not the broker's state).
    COPY_DOCKER_FLAGS = "copy_docker_flags"  # arg: sandbox name; `docker-args NAME` to the clipboard
    NEW_SANDBOX = "new_sandbox"  # a sandbox with a free name, its docker run flags to the clipboard
    OPEN_AUDIT_LOG = "open_audit_log"
    OPEN_CONFIG = "open_config"
    SHOW_STATUS = "show_status"  # a tray with no menu (pystray's xorg): the menu's words as a text file
    OPEN_DASHBOARD = "open_dashboard"
