"""Errors that reach the user as one line and a fixed exit status."""


class UsageError(Exception):
    """A problem the user can fix (bad config, missing path): exit status 2, no traceback."""

    exit_status = 2


class ConfigError(UsageError):
    """A config value is wrong; `key` is its dotted path (e.g. `model.num_heads`)."""

    def __init__(self, key: str, expected: str):
        self.key = key
        self.expected = expected
        super().__init__(f"config key '{key}': {expected}")

    def under(self, prefix: str) -> "ConfigError":
        """The same error with `prefix.` put in front of its key."""
        return ConfigError(f"{prefix}.{self.key}" if prefix else self.key, self.expected)


class Terminated(KeyboardInterrupt):
    """SIGTERM (a `timeout`, `kill`, systemd or a scheduler stopping the run): handled as an
    interrupt, so a step in progress discards its staging and the run is recorded failed."""


class LockedError(Exception):
    """Another run holds the pipeline root."""

    exit_status = 1
