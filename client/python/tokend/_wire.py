"""What the blocking and the asyncio clients share: framing, building a
Request, reading a Response into typed results. No I/O here.

The wire (docs/PROTOCOL.md): each message is one frame, a 0x00 flag byte, a
4-byte big-endian length, then a protobuf ``tokend.v1.Request`` (to tokend)
or ``tokend.v1.Response`` (from tokend), over a Unix stream socket.
"""

from __future__ import annotations

import os
import struct
from typing import Callable, Dict, NamedTuple, Optional

from . import errors
from .types import (
    AuditEvent,
    AuditLogCheck,
    AuditPage,
    DomainAdmin,
    Edited,
    Rolled,
    Granted,
    Issued,
    Revoked,
    TokenInfo,
    TokenPage,
    VerifyResult,
    WhoAmI,
    Propagation,
    ServerStatus,
    BulkRevoked,
    DomainPolicy,
    LeaksReported,
)

try:
    from ._proto import tokend_pb2 as pb
except ImportError as e:  # pragma: no cover - an install without its build step
    raise ImportError(
        "tokend: the generated protobuf module is missing; install the package "
        "(pip install ./client/python, which runs protoc) or build it with "
        "`make build`"
    ) from e

HEADER = struct.Struct(">BI")
HEADER_BYTES = HEADER.size

# The largest answer frame body accepted. docs/PROTOCOL.md: a full List page
# is about 3 MiB; the C library accepts up to 64 MiB and so does this one.
# The length is checked before anything of that size is read or allocated.
MAX_ANSWER_BYTES = 64 * 1024 * 1024

SOCKET_ENV = "TOKEND_SOCKET"
DEFAULT_SOCKET = "var/tokend.sock"

# Connection-level errors arrive on call_id 0 (docs/PROTOCOL.md).
CONNECTION_CALL_ID = 0


def socket_path(path: Optional[str]) -> str:
    """Where tokend listens: ``path``, else $TOKEND_SOCKET, else
    var/tokend.sock (the same order as the C library and tokenctl)."""
    if path:
        return path
    return os.environ.get(SOCKET_ENV) or DEFAULT_SOCKET


def frame(call_id: int, member: str, request, actor: Optional[str]) -> bytes:
    """One whole Request frame calling ``member`` (the oneof name, e.g.
    "verify") with ``request`` (its protobuf message)."""
    req = pb.Request(call_id=call_id)
    getattr(req, member).CopyFrom(request)
    if actor:
        req.actor = actor
    body = req.SerializeToString()
    return HEADER.pack(0, len(body)) + body


def body_length(header: bytes) -> int:
    """The body length of an answer frame from its 5-byte header; raises
    ProtocolError on a non-zero flag or a length over MAX_ANSWER_BYTES."""
    flag, length = HEADER.unpack(header)
    if flag != 0:
        raise errors.ProtocolError(f"answer frame with flag byte {flag:#04x}")
    if length > MAX_ANSWER_BYTES:
        raise errors.ProtocolError(
            f"answer frame of {length} bytes, over {MAX_ANSWER_BYTES}"
        )
    return length


def decode(body: bytes):
    """A Response from a frame body; ProtocolError if it is not one."""
    resp = pb.Response()
    try:
        resp.ParseFromString(body)
    except Exception as e:  # protobuf's DecodeError and friends
        raise errors.ProtocolError(f"answer is not a Response: {e}") from None
    return resp


def connection_error(resp) -> errors.TokendError:
    """The error a call_id 0 answer reports: tokend is closing the
    connection, and every call in flight on it is lost."""
    st = resp.status
    err = errors.error_for(st.code or errors.UNKNOWN, st.message)
    err.message = f"connection closed by tokend: {st.message}"
    err.args = (err.message,)
    return err


def result(resp, member: str):
    """The result member of an answer, or the error its status names."""
    if resp.status.code != 0:
        raise errors.error_for(resp.status.code, resp.status.message)
    if resp.WhichOneof("result") != member:
        raise errors.ProtocolError(
            f"answer OK but its result is {resp.WhichOneof('result')!r}, "
            f"not {member!r}"
        )
    return getattr(resp, member)


# ---- results ----


def _enum_name(enum, prefix: str, value: int) -> str:
    try:
        return enum.Name(value)[len(prefix) :]
    except ValueError:
        # A value a newer tokend added: keep the number rather than fail.
        return str(value)


def verify_result(r) -> VerifyResult:
    # A tokend older than issue 14 left reason UNSPECIFIED when valid; the
    # protocol says `valid` is the authority.
    if r.valid:
        reason = "VALID"
    else:
        reason = _enum_name(pb.InvalidReason, "INVALID_REASON_", r.reason)
    return VerifyResult(
        valid=r.valid,
        reason=reason,
        token_id=r.token_id,
        domain=r.domain,
        label=r.label,
        scopes=tuple(r.scopes),
        expires_at=r.expires_at,
        metadata=r.metadata,
    )


def token_info(t) -> TokenInfo:
    return TokenInfo(
        id=t.id,
        domain=t.domain,
        label=t.label,
        hint=t.hint,
        scopes=tuple(t.scopes),
        created_at=t.created_at,
        expires_at=t.expires_at,
        last_used_at=t.last_used_at,
        revoked_at=t.revoked_at,
        status=_enum_name(pb.TokenStatus, "TOKEN_STATUS_", t.status),
        created_by=t.created_by,
        revoked_by=t.revoked_by,
        metadata=t.metadata,
        rolled_from=t.rolled_from,
        rolled_to=t.rolled_to,
    )


def propagation(r) -> Optional[Propagation]:
    """A write answer's Propagation, or None when tokend did not send one."""
    if not r.HasField("propagation"):
        return None
    p = r.propagation
    return Propagation(p.revision, p.hosts_applied, p.hosts_pending)


def audit_event(e) -> AuditEvent:
    return AuditEvent(
        id=e.id,
        time=e.time,
        peer_uid=e.peer_uid,
        peer_pid=e.peer_pid,
        actor=e.actor,
        break_glass=e.break_glass,
        domain=e.domain,
        token_id=e.token_id,
        method=e.method,
        code=e.code,
        detail=e.detail,
        count=e.count,
    )


class Method(NamedTuple):
    member: str  # the oneof member, in Request and Response alike
    # Changes nothing when repeated: resent on a new connection when the
    # old one closed before the answer (docs/PROTOCOL.md, "Reconnecting").
    idempotent: bool
    convert: Callable


METHODS: Dict[str, Method] = {
    m.member: m
    for m in (
        Method(
            "issue",
            False,
            lambda r: Issued(
                token=r.token,
                info=token_info(r.info),
                propagation=propagation(r),
            ),
        ),
        Method("verify", True, verify_result),
        # Safe to repeat (a repeat answers already_revoked), but a client
        # that did not see the first answer learns less from the second:
        # left to the caller, like every write.
        Method(
            "revoke",
            False,
            lambda r: Revoked(r.revoked_at, r.already_revoked, propagation(r)),
        ),
        Method(
            "list",
            True,
            lambda r: TokenPage(
                tuple(token_info(t) for t in r.tokens), r.next_page_token
            ),
        ),
        Method(
            "grant_domain_admin",
            False,
            lambda r: Granted(r.granted_at, r.already_admin, propagation(r)),
        ),
        Method("revoke_domain_admin", False, lambda r: r.tokens_revoked),
        Method(
            "list_domain_admins",
            True,
            lambda r: tuple(
                DomainAdmin(a.user, a.granted_at, a.granted_by) for a in r.admins
            ),
        ),
        Method(
            "list_audit_events",
            True,
            lambda r: AuditPage(
                tuple(audit_event(e) for e in r.events), r.next_page_token
            ),
        ),
        Method(
            "who_am_i",
            True,
            lambda r: WhoAmI(r.uid, r.gid, r.pid, r.user, r.operator, r.verifier),
        ),
        Method(
            "server_status",
            True,
            lambda r: ServerStatus(
                r.version,
                r.store,
                r.host_id,
                r.applied_revision,
                r.fresh,
                r.lease_left_ms,
                r.tokens,
                r.index_digest,
                r.problem,
            ),
        ),
        Method(
            "verify_audit_log",
            True,
            lambda r: AuditLogCheck(
                r.rows_checked, r.first_bad_id, r.problem, r.head_id, r.head_hash
            ),
        ),
        # issue 17. Lookup reads; Edit and Roll are writes, never resent.
        Method("lookup", True, lambda r: token_info(r.info)),
        Method("edit", False, lambda r: Edited(token_info(r.info), propagation(r))),
        Method(
            "roll",
            False,
            lambda r: Rolled(
                token=r.token,
                info=token_info(r.info),
                previous=token_info(r.previous),
                propagation=propagation(r),
            ),
        ),
    )
}


# ---- requests: one builder per method, shared by both clients ----


def issue_request(domain, label, scopes, expires_at, metadata=""):
    return pb.IssueRequest(
        domain=domain,
        label=label,
        scopes=list(scopes),
        expires_at=expires_at,
        metadata=metadata,
    )


def verify_request(token):
    return pb.VerifyRequest(token=token)


def revoke_request(domain, token_id):
    return pb.RevokeRequest(domain=domain, token_id=token_id)


def list_request(domain, page_size, page_token, include_revoked, expiring_within_ms=0):
    return pb.ListRequest(
        domain=domain,
        page_size=page_size,
        page_token=page_token,
        include_revoked=include_revoked,
        expiring_within_ms=expiring_within_ms,
    )


def grant_domain_admin_request(domain, user):
    return pb.GrantDomainAdminRequest(domain=domain, user=user)


def revoke_domain_admin_request(domain, user, revoke_their_tokens):
    return pb.RevokeDomainAdminRequest(
        domain=domain, user=user, revoke_their_tokens=revoke_their_tokens
    )


def list_domain_admins_request(domain):
    return pb.ListDomainAdminsRequest(domain=domain)


def list_audit_events_request(domain, since, page_size, page_token):
    return pb.ListAuditEventsRequest(
        domain=domain, since=since, page_size=page_size, page_token=page_token
    )


def who_am_i_request():
    return pb.WhoAmIRequest()


def verify_audit_log_request(anchor_id, anchor_hash):
    return pb.VerifyAuditLogRequest(anchor_id=anchor_id, anchor_hash=anchor_hash)


def server_status_request():
    return pb.ServerStatusRequest()


# ---- the Verify cache (issue 15; tokend._vcache) ----

# GetCacheRegion's answer is used as it comes (generation, size,
# heartbeat_bound_ms); its descriptor arrives beside the bytes (SCM_RIGHTS).
METHODS["get_cache_region"] = Method("get_cache_region", True, lambda r: r)


def get_cache_region_request():
    return pb.GetCacheRegionRequest()


def verify_request_reporting(token, cached_hits):
    """A Verify that also reports the token's hits answered from the
    cache since the last report (0: none)."""
    return pb.VerifyRequest(token=token, cached_hits=cached_hits)
# ---- issue 17 ----


def lookup_request(domain, token_id, token):
    """Exactly one of token_id and token (the secret); ValueError else."""
    if (token_id is None) == (token is None):
        raise ValueError("lookup: give exactly one of token_id and token")
    if token is not None:
        return pb.LookupRequest(domain=domain, token=token)
    return pb.LookupRequest(domain=domain, token_id=token_id)


def edit_request(domain, token_id, label, metadata, expires_at, scopes):
    """Each of label, metadata ("" removes it), expires_at (0: never) and
    scopes that is not None is changed."""
    req = pb.EditRequest(domain=domain, token_id=token_id)
    if label is not None:
        req.set_label = True
        req.label = label
    if metadata is not None:
        req.set_metadata = True
        req.metadata = metadata
    if expires_at is not None:
        req.set_expires_at = True
        req.expires_at = expires_at
    if scopes is not None:
        req.set_scopes = True
        req.scopes.extend(scopes)
    return req


def roll_request(domain, token_id, grace_ms):
    return pb.RollRequest(domain=domain, token_id=token_id, grace_ms=grace_ms)


# ---- issue 17: BulkRevoke, RevokeLeaked, Set/GetDomainPolicy ----


def domain_policy(p) -> DomainPolicy:
    return DomainPolicy(
        p.max_lifetime_ms,
        p.require_expiry,
        tuple(p.allowed_scopes),
        p.max_active_tokens,
        p.updated_at,
        p.updated_by,
    )


METHODS.update(
    {
        m.member: m
        for m in (
            Method(
                "bulk_revoke",
                False,
                lambda r: BulkRevoked(r.revoked, r.already_revoked, propagation(r)),
            ),
            Method(
                "revoke_leaked",
                False,
                lambda r: LeaksReported(tuple(r.found), r.revoked, propagation(r)),
            ),
            Method("set_domain_policy", False, lambda r: domain_policy(r.policy)),
            Method("get_domain_policy", True, lambda r: domain_policy(r.policy)),
        )
    }
)


def bulk_revoke_request(domain, token_ids, created_by, all_, created_before):
    return pb.BulkRevokeRequest(
        domain=domain,
        token_ids=list(token_ids),
        created_by=created_by,
        all=all_,
        created_before=created_before,
    )


def revoke_leaked_request(tokens, source):
    return pb.RevokeLeakedRequest(tokens=list(tokens), source=source)


def set_domain_policy_request(domain, policy: DomainPolicy):
    return pb.SetDomainPolicyRequest(
        domain=domain,
        policy=pb.DomainPolicy(
            max_lifetime_ms=policy.max_lifetime_ms,
            require_expiry=policy.require_expiry,
            allowed_scopes=list(policy.allowed_scopes),
            max_active_tokens=policy.max_active_tokens,
        ),
    )


def get_domain_policy_request(domain):
    return pb.GetDomainPolicyRequest(domain=domain)
