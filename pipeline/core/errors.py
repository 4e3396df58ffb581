"""Errors that reach the user as one line and a fixed exit status."""


class UsageError(Exception):
    """A problem the user can fix (bad config, missing path): exit status 2, no traceback."""


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
    """Another run holds the pipeline root: exit status 1."""


def first_line(err: BaseException, limit: int | None = None) -> str:
    """How an error is quoted inside a one-line message.

    Args:
        err: the error.
        limit: the most characters to keep (None: the whole line).

    Returns:
        The first line of its message, or its class name when the message is empty.
    """
    lines = str(err).strip().splitlines()
    return lines[0][:limit] if lines else type(err).__name__
