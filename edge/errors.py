"""Errors a user can meet: the CLI prints them as one line and exits with code 2."""


class EdgeError(Exception):
    """A problem with the user's input or environment; the message says what to do."""

    exit_code = 2
