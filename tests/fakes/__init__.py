"""Stand-ins for outside services: only Anthropic's servers are faked, everything else is real."""
