"""tokend's Python client: ``Client`` (blocking) and ``AsyncClient``
(asyncio, pipelined) over tokend's Unix socket. See client/python/README.md
and docs/PROTOCOL.md."""

from .aio import AsyncClient
from .client import Client
from .errors import (
    ConnectionClosed,
    DeadlineExceeded,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    PermissionDenied,
    ProtocolError,
    ResourceExhausted,
    Timeout,
    TokendError,
    Unavailable,
    Unimplemented,
)
from .types import (
    BulkRevoked,
    DomainPolicy,
    LeaksReported,
    AuditEvent,
    AuditLogCheck,
    AuditPage,
    DomainAdmin,
    Granted,
    Issued,
    Propagation,
    Revoked,
    ServerStatus,
    TokenInfo,
    TokenPage,
    VerifyResult,
    WhoAmI,
)

__version__ = "0.1.0"

__all__ = [
    "BulkRevoked",
    "DomainPolicy",
    "LeaksReported",
    "AsyncClient",
    "AuditEvent",
    "Propagation",
    "ServerStatus",
    "AuditLogCheck",
    "AuditPage",
    "Client",
    "ConnectionClosed",
    "DeadlineExceeded",
    "DomainAdmin",
    "FailedPrecondition",
    "Granted",
    "Internal",
    "InvalidArgument",
    "Issued",
    "NotFound",
    "PermissionDenied",
    "ProtocolError",
    "ResourceExhausted",
    "Revoked",
    "Timeout",
    "TokenInfo",
    "TokenPage",
    "TokendError",
    "Unavailable",
    "Unimplemented",
    "VerifyResult",
    "WhoAmI",
]
