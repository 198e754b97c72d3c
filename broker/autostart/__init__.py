"""Launch at login: one front over per-OS writers (macOS LaunchAgent, XDG autostart, Windows
Run key)."""
