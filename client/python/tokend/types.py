"""Typed results. Timestamps are int Unix milliseconds, 0 meaning "not set",
as on the wire (docs/PROTOCOL.md). Enums are their short names: a Verify's
``reason`` is "VALID", "MALFORMED", "UNKNOWN", "REVOKED" or "EXPIRED"; a
token's ``status`` is "ACTIVE", "REVOKED" or "EXPIRED"."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple


@dataclass(frozen=True)
class VerifyResult:
    valid: bool
    reason: str
    # Set when the token is known (valid, revoked or expired), else "".
    token_id: str = ""
    domain: str = ""
    label: str = ""
    scopes: Tuple[str, ...] = ()
    expires_at: int = 0
    metadata: str = ""  # issue 17: the token's JSON object, "" for none


@dataclass(frozen=True)
class TokenInfo:
    id: str
    domain: str
    label: str
    hint: str
    scopes: Tuple[str, ...]
    created_at: int
    expires_at: int
    last_used_at: int
    revoked_at: int
    status: str
    created_by: str
    revoked_by: str
    # issue 17
    metadata: str = ""  # a JSON object (compact), "" for none
    rolled_from: str = ""  # the token Roll replaced with this one
    rolled_to: str = ""  # the token Roll replaced this one with


@dataclass(frozen=True)
class Propagation:
    """How far a write had spread when it was answered, with a store several
    hosts share (PostgreSQL; None with SQLite): tokend answers once every
    live host has applied it, or after its --propagation-timeout-ms."""

    revision: int
    hosts_applied: int
    hosts_pending: int  # 0: in effect on every live host


@dataclass(frozen=True, repr=False)
class Issued:
    # The secret, shown this once: repr() leaves it out so that logging the
    # result does not log the token.
    token: str
    info: TokenInfo
    propagation: Optional[Propagation] = None

    def __repr__(self) -> str:
        return (
            f"Issued(token=<secret>, info={self.info!r}, "
            f"propagation={self.propagation!r})"
        )


@dataclass(frozen=True)
class Edited:
    """An Edit's answer (issue 17): the token as it is now."""

    info: TokenInfo
    propagation: Optional[Propagation] = None


@dataclass(frozen=True, repr=False)
class Rolled:
    """A Roll's answer (issue 17). The new secret, shown this once, is left
    out of repr() so that logging the result does not log it."""

    token: str
    info: TokenInfo  # the new token (rolled_from set)
    previous: TokenInfo  # the old one as it is now (rolled_to set)
    propagation: Optional[Propagation] = None

    def __repr__(self) -> str:
        return (
            f"Rolled(token=<secret>, info={self.info!r}, "
            f"previous={self.previous!r}, propagation={self.propagation!r})"
        )


@dataclass(frozen=True)
class Revoked:
    revoked_at: int
    already_revoked: bool
    propagation: Optional[Propagation] = None


@dataclass(frozen=True)
class TokenPage:
    tokens: Tuple[TokenInfo, ...]
    next_page_token: str  # "" on the last page


@dataclass(frozen=True)
class Granted:
    granted_at: int
    already_admin: bool
    propagation: Optional[Propagation] = None


@dataclass(frozen=True)
class DomainAdmin:
    user: str
    granted_at: int
    granted_by: str


@dataclass(frozen=True)
class AuditEvent:
    id: int
    time: int
    peer_uid: int
    peer_pid: int
    actor: str
    break_glass: bool
    domain: str
    token_id: str
    method: str
    code: int
    detail: str
    count: int


@dataclass(frozen=True)
class AuditPage:
    events: Tuple[AuditEvent, ...]
    next_page_token: str


@dataclass(frozen=True)
class AuditLogCheck:
    rows_checked: int
    first_bad_id: int  # 0: every row checks out
    problem: str
    head_id: int
    head_hash: str  # 64 hex digits: an anchor for a later check

    @property
    def ok(self) -> bool:
        return self.first_bad_id == 0


@dataclass(frozen=True)
class WhoAmI:
    uid: int
    gid: int
    pid: int
    user: str
    operator: bool
    verifier: bool




@dataclass(frozen=True)
class ServerStatus:
    """How tokend is doing, from its memory (ServerStatus)."""

    version: str
    store: str  # "sqlite", "postgresql"
    host_id: str  # "" with a store of one host
    applied_revision: int
    fresh: bool  # False: past its lease, Verify answers UNAVAILABLE
    lease_left_ms: int
    tokens: int
    index_digest: str  # 64 hex digits, equal on hosts that agree
    problem: str


# ---- issue 17 ----


@dataclass(frozen=True)
class BulkRevoked:
    """BulkRevoke's answer: revoked by this call, and selected tokens that
    were revoked before."""

    revoked: int
    already_revoked: int
    propagation: Optional[Propagation] = None


@dataclass(frozen=True)
class LeaksReported:
    """RevokeLeaked's answer: for each secret, whether it is one of this
    tokend's tokens (active or not), and how many this call revoked."""

    found: Tuple[bool, ...]
    revoked: int
    propagation: Optional[Propagation] = None


@dataclass(frozen=True)
class DomainPolicy:
    """A domain's policy; every limit 0 (or no scopes): none."""

    max_lifetime_ms: int = 0
    require_expiry: bool = False
    allowed_scopes: Tuple[str, ...] = ()
    max_active_tokens: int = 0
    updated_at: int = 0  # answers only
    updated_by: str = ""  # answers only
