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


def shown(value: object, limit: int = 80) -> str:
    """A value as a one-line message quotes it: a short repr, never its whole size (a
    5 MB string or a structure of nested aliases stays a few dozen characters)."""
    import reprlib

    short = reprlib.Repr()
    short.maxlevel, short.maxlist, short.maxtuple, short.maxdict = 2, 4, 4, 4
    short.maxstring = short.maxother = short.maxlong = limit
    text = short.repr(value).replace("\n", " ")
    return text if len(text) <= limit else text[:limit - 3] + "..."
