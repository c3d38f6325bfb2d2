"""tokend's Python client: ``Client`` (blocking) and ``AsyncClient``
(asyncio, pipelined) over tokend's Unix socket. See client/python/README.md
and docs/PROTOCOL.md."""

from ._vcache import CacheStats
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
    Edited,
    Granted,
    Issued,
    Propagation,
    Revoked,
    Rolled,
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
    "CacheStats",
    "AuditEvent",
    "Propagation",
    "ServerStatus",
    "AuditLogCheck",
    "AuditPage",
    "Client",
    "ConnectionClosed",
    "DeadlineExceeded",
    "DomainAdmin",
    "Edited",
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
    "Rolled",
    "Timeout",
    "TokenInfo",
    "TokenPage",
    "TokendError",
    "Unavailable",
    "Unimplemented",
    "VerifyResult",
    "WhoAmI",
]
