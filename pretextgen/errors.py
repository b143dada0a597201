"""Errors a user can fix. The CLI prints them as one line, never as a traceback."""


class PretextgenError(Exception):
    """A mistake in the input, the config or the command line; the message says what to change."""


class ConfigError(PretextgenError):
    """A task parameter or build option that is unknown or out of range."""
