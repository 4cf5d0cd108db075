"""Errors a user can meet: the CLI prints them as one line and exits with code 2."""


class EdgeError(Exception):
    """A problem with the user's input or environment; the message says what to do."""

    exit_code = 2


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its type name when it has none): what a
    one-line error quotes from a library's multi-line complaint."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


class SourceError(EdgeError):
    """A source that cannot be opened: `stream` says which ("video" or "audio"), so a
    program can tell the camera from the microphone without reading the message."""

    def __init__(self, stream: str, message: str):
        super().__init__(message)
        self.stream = stream
