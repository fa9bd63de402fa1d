"""The one exception type that turns into a client-facing error response.

Everything a client can get wrong is raised as ``RequestError`` with the HTTP status and a
message that names the problem; anything else that escapes a handler is a server bug and
is answered with a bare 500 (the traceback goes to the log, never to the client).
"""

from __future__ import annotations


class RequestError(Exception):
    """A problem with the request, answered as ``{"error": message}`` with ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def bad_request(message: str) -> RequestError:
    return RequestError(400, message)
