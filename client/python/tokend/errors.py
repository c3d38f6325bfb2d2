"""Exceptions: one per gRPC status code tokend uses, all under TokendError.

A failed call raises the class matching the status code of tokend's answer
(``NotFound`` for 5, ...); a code this module does not know raises
``TokendError`` itself. Every exception carries ``code`` (the gRPC canonical
status number) and ``message`` (tokend's one-line English reason).
"""

from __future__ import annotations

from typing import Dict, Type

OK = 0
CANCELLED = 1
UNKNOWN = 2
INVALID_ARGUMENT = 3
DEADLINE_EXCEEDED = 4
NOT_FOUND = 5
ALREADY_EXISTS = 6
PERMISSION_DENIED = 7
RESOURCE_EXHAUSTED = 8
FAILED_PRECONDITION = 9
ABORTED = 10
OUT_OF_RANGE = 11
UNIMPLEMENTED = 12
INTERNAL = 13
UNAVAILABLE = 14

CODE_NAMES = {
    OK: "OK",
    CANCELLED: "CANCELLED",
    UNKNOWN: "UNKNOWN",
    INVALID_ARGUMENT: "INVALID_ARGUMENT",
    DEADLINE_EXCEEDED: "DEADLINE_EXCEEDED",
    NOT_FOUND: "NOT_FOUND",
    ALREADY_EXISTS: "ALREADY_EXISTS",
    PERMISSION_DENIED: "PERMISSION_DENIED",
    RESOURCE_EXHAUSTED: "RESOURCE_EXHAUSTED",
    FAILED_PRECONDITION: "FAILED_PRECONDITION",
    ABORTED: "ABORTED",
    OUT_OF_RANGE: "OUT_OF_RANGE",
    UNIMPLEMENTED: "UNIMPLEMENTED",
    INTERNAL: "INTERNAL",
    UNAVAILABLE: "UNAVAILABLE",
}


class TokendError(Exception):
    """A call failed. ``code`` is a gRPC status number, ``message`` why."""

    code: int = UNKNOWN

    def __init__(self, message: str, code: int | None = None) -> None:
        super().__init__(message)
        if code is not None:
            self.code = code
        self.message = message

    @property
    def code_name(self) -> str:
        return CODE_NAMES.get(self.code, str(self.code))

    def __str__(self) -> str:
        return f"{self.code_name}: {self.message}"


class InvalidArgument(TokendError):
    code = INVALID_ARGUMENT


class DeadlineExceeded(TokendError):
    """tokend gave up on an incomplete request, or (``Timeout``) the client
    gave up waiting for an answer."""

    code = DEADLINE_EXCEEDED


class Timeout(DeadlineExceeded):
    """No answer within the call's timeout. The call may still complete on
    tokend's side: a write (Issue, Revoke, ...) may have committed."""


class NotFound(TokendError):
    code = NOT_FOUND


class PermissionDenied(TokendError):
    code = PERMISSION_DENIED


class ResourceExhausted(TokendError):
    code = RESOURCE_EXHAUSTED


class FailedPrecondition(TokendError):
    code = FAILED_PRECONDITION


class Unimplemented(TokendError):
    code = UNIMPLEMENTED


class Internal(TokendError):
    code = INTERNAL


class Unavailable(TokendError):
    code = UNAVAILABLE


class ConnectionClosed(Unavailable):
    """The connection ended before the answer came: tokend closed it (idle
    timeout, shutdown, a connection-level error) or could not be reached.

    For a write (Issue, Revoke, GrantDomainAdmin, RevokeDomainAdmin) the
    call may or may not have committed; the client never resends a write by
    itself (see docs/PROTOCOL.md, "Reconnecting")."""


class ProtocolError(TokendError):
    """tokend's answer broke the protocol (a bad frame, a missing result):
    the connection is closed."""

    code = INTERNAL


_BY_CODE: Dict[int, Type[TokendError]] = {
    cls.code: cls
    for cls in (
        InvalidArgument,
        DeadlineExceeded,
        NotFound,
        PermissionDenied,
        ResourceExhausted,
        FailedPrecondition,
        Unimplemented,
        Internal,
        Unavailable,
    )
}


def error_for(code: int, message: str) -> TokendError:
    """The exception for a non-OK status from tokend."""
    cls = _BY_CODE.get(code, TokendError)
    return cls(message, code)
