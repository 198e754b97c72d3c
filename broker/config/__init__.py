"""The config file and provider profiles: where they are, and their text parsed into dataclasses."""
