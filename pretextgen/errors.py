"""Errors a user can fix. The CLI prints them as one line, never as a traceback."""


class PretextgenError(Exception):
    """A mistake in the input, the config or the command line; the message says what to change."""


class ConfigError(PretextgenError):
    """A task parameter or build option that is unknown or out of range."""


class UnusablePlan(Exception):
    """Raised by a task's ``plan`` when the sample it would make is not worth training on (the
    task's own usability rule); the message is the reason. The builder draws again, elsewhere."""
