"""The blocking client: one Unix socket connection, one call at a time.

    with tokend.Client() as c:          # --socket, $TOKEND_SOCKET, var/tokend.sock
        r = c.verify(token)
        if r.valid and "read" in r.scopes: ...

Thread-safe by serializing: a lock holds the connection for one call at a
time. For many calls in flight on one connection use AsyncClient.
"""

from __future__ import annotations

import array
import os
import select
import socket as _socket
import threading
import time
from typing import Iterator, Optional, Sequence

from . import _vcache, _wire, errors
from .types import (
    AuditEvent,
    AuditLogCheck,
    AuditPage,
    DomainAdmin,
    Edited,
    Granted,
    Issued,
    Revoked,
    Rolled,
    TokenInfo,
    TokenPage,
    VerifyResult,
    WhoAmI,
    ServerStatus,
    BulkRevoked,
    DomainPolicy,
    LeaksReported,
)

_READ_CHUNK = 65536


class Client:
    """A blocking tokend client.

    ``socket``: the path of tokend's socket (default: $TOKEND_SOCKET, else
    var/tokend.sock). ``timeout``: seconds to wait for each call's answer
    (None: forever); past it the call raises ``errors.Timeout``. ``actor``:
    for an operator acting for a user (docs/PROTOCOL.md, "actor"); each
    method also takes ``actor=`` for one call.

    The connection is opened on the first call and reopened after tokend
    closed it. A call that changes nothing (verify, list, whoami, ...) whose
    connection closes before its answer is sent once more on a new
    connection; a write (issue, revoke, grant/revoke_domain_admin) never
    is: it raises ``errors.ConnectionClosed``, and may have committed.

    ``cache_size``: keep up to that many valid Verify answers in this
    process, trusted only under tokend's revocation epoch region (see
    tokend._vcache and README.md, "Verify cache"); None (the default): no
    cache. Without a region from tokend nothing is cached.
    """

    def __init__(
        self,
        socket: Optional[str] = None,
        *,
        timeout: Optional[float] = 5.0,
        actor: Optional[str] = None,
        cache_size: Optional[int] = None,
    ) -> None:
        self.socket_path = _wire.socket_path(socket)
        self.timeout = timeout
        self.actor = actor
        self._sock: Optional[_socket.socket] = None
        self._buf = bytearray()
        self._next_id = 0
        # Reentrant: a cached verify holds it across its lookup and call.
        self._lock = threading.RLock()
        # The Verify cache, and descriptors tokend passed (SCM_RIGHTS) not
        # yet taken: only a caching client reads with recvmsg().
        self._cache = (
            _vcache.VerifyCache(cache_size) if cache_size is not None else None
        )
        self._passed_fds: list = []

    # ---- connection ----

    def connect(self) -> None:
        """Opens the connection now rather than on the first call."""
        with self._lock:
            if self._sock is None:
                self._open()

    def close(self) -> None:
        with self._lock:
            self._drop()
            if self._cache is not None:
                self._cache.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _open(self) -> None:
        s = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            s.settimeout(self.timeout)
            s.connect(self.socket_path)
        except OSError as e:
            s.close()
            raise errors.ConnectionClosed(
                f"cannot connect to {self.socket_path}: {e.strerror or e}"
            ) from None
        self._sock = s
        self._buf.clear()
        # Maybe another tokend: its region, not the old one's.
        if self._cache is not None:
            self._cache.drop_region()

    def _drop(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None
        self._buf.clear()
        self._close_passed_fds()

    def _close_passed_fds(self) -> None:
        for fd in self._passed_fds:
            os.close(fd)
        self._passed_fds = []

    def _recv(self) -> bytes:
        """The next bytes from tokend; a caching client also keeps the
        descriptors that came with them."""
        assert self._sock is not None
        if self._cache is None:
            return self._sock.recv(_READ_CHUNK)
        data, anc, _, _ = self._sock.recvmsg(
            _READ_CHUNK, _socket.CMSG_SPACE(4 * array.array("i").itemsize)
        )
        for level, kind, cdata in anc:
            if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
                fds = array.array("i")
                fds.frombytes(cdata[: len(cdata) - len(cdata) % fds.itemsize])
                self._passed_fds.extend(fds)
        return data

    def _read_answer(self, deadline: Optional[float]):
        """The next whole answer frame's Response. Partial input stays in
        self._buf, so a timeout mid-frame leaves the stream in step."""
        assert self._sock is not None
        while True:
            if len(self._buf) >= _wire.HEADER_BYTES:
                n = _wire.body_length(bytes(self._buf[: _wire.HEADER_BYTES]))
                end = _wire.HEADER_BYTES + n
                if len(self._buf) >= end:
                    body = bytes(self._buf[_wire.HEADER_BYTES : end])
                    del self._buf[:end]
                    return _wire.decode(body)
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise _socket.timeout()
                self._sock.settimeout(left)
            chunk = self._recv()
            if not chunk:
                raise errors.ConnectionClosed("tokend closed the connection")
            self._buf += chunk

    def _exchange(self, frame: bytes, call_id: int, deadline: Optional[float]):
        assert self._sock is not None
        try:
            self._sock.settimeout(self.timeout)
            try:
                self._sock.sendall(frame)
            except OSError as e:
                # tokend may have said why it closed (call_id 0) before
                # the write failed, e.g. too many connections.
                err = self._closing_reason(deadline) or errors.ConnectionClosed(
                    f"connection to tokend lost: {e.strerror or e}"
                )
                self._drop()
                raise err from None
            while True:
                resp = self._read_answer(deadline)
                if resp.call_id == call_id:
                    return resp
                if resp.call_id == _wire.CONNECTION_CALL_ID:
                    self._drop()
                    raise _wire.connection_error(resp)
                # The late answer of an earlier call that timed out.
        except _socket.timeout:
            raise errors.Timeout(
                f"no answer within {self.timeout} s", errors.DEADLINE_EXCEEDED
            ) from None
        except errors.ProtocolError:
            self._drop()
            raise
        except errors.ConnectionClosed:
            self._drop()
            raise
        except OSError as e:  # EPIPE, ECONNRESET: tokend went away
            self._drop()
            raise errors.ConnectionClosed(
                f"connection to tokend lost: {e.strerror or e}"
            ) from None

    def _peer_closed(self) -> bool:
        """True if tokend closed the connection with nothing left to read
        (one poll, no wait)."""
        if self._sock is None or self._buf:
            return False
        try:
            r, _, _ = select.select([self._sock], [], [], 0)
            if not r:
                return False
            return self._sock.recv(1, _socket.MSG_PEEK | _socket.MSG_DONTWAIT) == b""
        except OSError:
            return True

    def _closing_reason(self, deadline: Optional[float]):
        """The connection-level error tokend sent before closing, if one is
        still to be read; None if not."""
        try:
            while True:
                resp = self._read_answer(deadline)
                if resp.call_id == _wire.CONNECTION_CALL_ID:
                    return _wire.connection_error(resp)
        except (OSError, errors.TokendError):
            return None

    def _call(self, member: str, request, actor: Optional[str]):
        method = _wire.METHODS[member]
        actor = actor if actor is not None else self.actor
        with self._lock:
            for attempt in (0, 1):
                # A write is never resent, so it is not sent on a connection
                # tokend is known to have closed (idle timeout) either.
                if not method.idempotent and self._peer_closed():
                    self._drop()
                fresh = self._sock is None
                if fresh:
                    self._open()
                self._next_id += 1
                call_id = self._next_id
                frame = _wire.frame(call_id, member, request, actor)
                deadline = (
                    None if self.timeout is None else time.monotonic() + self.timeout
                )
                try:
                    resp = self._exchange(frame, call_id, deadline)
                except errors.ConnectionClosed:
                    # A connection that served earlier calls may have been
                    # closed while idle: one more try on a new one, for a
                    # call that changes nothing.
                    if method.idempotent and not fresh and attempt == 0:
                        continue
                    raise
                return method.convert(_wire.result(resp, member))
        raise AssertionError("unreachable")

    # ---- methods (docs/PROTOCOL.md, "Methods") ----

    def verify(self, token: str) -> VerifyResult:
        """Checks a token. An invalid token is a result (valid False, and
        why in ``reason``), not an exception. A caching client (cache_size)
        may answer a valid token from its cache (README.md, "Verify
        cache")."""
        if self._cache is None:
            return self._call("verify", _wire.verify_request(token), None)
        return self._verify_cached(token)

    def issue(
        self,
        domain: str,
        label: str,
        scopes: Sequence[str] = (),
        expires_at: int = 0,
        *,
        actor: Optional[str] = None,
        metadata: str = "",
    ) -> Issued:
        """Issues a token; its secret is ``.token``, shown this once. Never
        resent by the client: on ConnectionClosed, look with list() before
        issuing again."""
        return self._call(
            "issue",
            _wire.issue_request(domain, label, scopes, expires_at, metadata),
            actor,
        )

    def revoke(
        self, domain: str, token_id: str, *, actor: Optional[str] = None
    ) -> Revoked:
        return self._call("revoke", _wire.revoke_request(domain, token_id), actor)

    def list_page(
        self,
        domain: str,
        page_token: str = "",
        page_size: int = 0,
        include_revoked: bool = False,
        *,
        actor: Optional[str] = None,
        expiring_within_ms: int = 0,
    ) -> TokenPage:
        """One page of a domain's tokens, newest first."""
        return self._call(
            "list",
            _wire.list_request(
                domain, page_size, page_token, include_revoked, expiring_within_ms
            ),
            actor,
        )

    def list(
        self,
        domain: str,
        page_size: int = 0,
        include_revoked: bool = False,
        *,
        actor: Optional[str] = None,
        expiring_within_ms: int = 0,
    ) -> Iterator[TokenInfo]:
        """Every token of a domain, newest first, fetching pages as the
        iteration reaches them."""
        page_token = ""
        while True:
            page = self.list_page(
                domain,
                page_token,
                page_size,
                include_revoked,
                actor=actor,
                expiring_within_ms=expiring_within_ms,
            )
            yield from page.tokens
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    def grant_domain_admin(
        self, domain: str, user: str, *, actor: Optional[str] = None
    ) -> Granted:
        return self._call(
            "grant_domain_admin", _wire.grant_domain_admin_request(domain, user), actor
        )

    def revoke_domain_admin(
        self,
        domain: str,
        user: str,
        revoke_their_tokens: bool = False,
        *,
        actor: Optional[str] = None,
    ) -> int:
        """Returns how many of the user's tokens were revoked with them."""
        return self._call(
            "revoke_domain_admin",
            _wire.revoke_domain_admin_request(domain, user, revoke_their_tokens),
            actor,
        )

    def list_domain_admins(
        self, domain: str, *, actor: Optional[str] = None
    ) -> Sequence[DomainAdmin]:
        return self._call(
            "list_domain_admins", _wire.list_domain_admins_request(domain), actor
        )

    def list_audit_events_page(
        self,
        domain: str = "",
        since: int = 0,
        page_token: str = "",
        page_size: int = 0,
        *,
        actor: Optional[str] = None,
    ) -> AuditPage:
        """One page of audit events, newest first; domain "" is every
        domain (operators only)."""
        return self._call(
            "list_audit_events",
            _wire.list_audit_events_request(domain, since, page_size, page_token),
            actor,
        )

    def list_audit_events(
        self,
        domain: str = "",
        since: int = 0,
        page_size: int = 0,
        *,
        actor: Optional[str] = None,
    ) -> Iterator[AuditEvent]:
        page_token = ""
        while True:
            page = self.list_audit_events_page(
                domain, since, page_token, page_size, actor=actor
            )
            yield from page.events
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    def verify_audit_log(
        self,
        anchor_id: int = 0,
        anchor_hash: str = "",
        *,
        actor: Optional[str] = None,
    ) -> AuditLogCheck:
        return self._call(
            "verify_audit_log",
            _wire.verify_audit_log_request(anchor_id, anchor_hash),
            actor,
        )

    def whoami(self, *, actor: Optional[str] = None) -> WhoAmI:
        return self._call("who_am_i", _wire.who_am_i_request(), actor)

    def server_status(self) -> ServerStatus:
        """How tokend is doing (verifiers and operators)."""
        return self._call("server_status", _wire.server_status_request(), None)

    # ---- the Verify cache (issue 15, section 2; tokend._vcache) ----

    def cache_stats(self) -> Optional[_vcache.CacheStats]:
        """The cache's counters (hits, misses, flushes, stale, reported),
        its size and its region's state; None for a client without one."""
        if self._cache is None:
            return None
        with self._lock:
            return self._cache.stats()

    def _attach_region(self) -> None:
        """Asks tokend for its epoch region and maps it. Any failure (an
        old tokend, not a verifier, the descriptor missing or not a sealed
        region) leaves the client without a region: it does not cache."""
        cache = self._cache
        self._close_passed_fds()
        try:
            resp = self._call(
                "get_cache_region", _wire.get_cache_region_request(), None
            )
        except errors.TokendError:
            return
        fds, self._passed_fds = self._passed_fds, []
        try:
            if fds:
                cache.attach(fds[-1], resp.generation)
        except (ValueError, OSError):
            pass
        finally:
            for fd in fds:
                os.close(fd)

    def _cache_lookup(self, token: str, ask: _vcache.Ask):
        """The cached answer for token, or None with ask filled (the same
        checks, in the same order, as the C library's
        client_cache_lookup)."""
        cache = self._cache
        if cache.region is None and cache.region_wanted:
            # Connected first: opening a connection asks for its region.
            if self._sock is None:
                self._open()
            cache.region_wanted = False  # once per connection
            self._attach_region()
        rg = cache.region
        if rg is None:
            return None
        mono = _vcache._mono_ms()
        if not rg.fresh(mono):
            cache.stale += 1
            return None
        # A killed tokend leaves its page looking alive until the bound;
        # its socket tells at once. Looked at once per millisecond, not per
        # hit: a restarted tokend cannot be up and answer a Revoke within
        # one. The next Verify reconnects and maps the new page.
        if mono != cache.conn_checked_ms:
            cache.conn_checked_ms = mono
            if self._sock is None or self._peer_closed():
                self._drop()
                cache.drop_region()
                cache.stale += 1
                return None
        return cache.lookup(token, mono, ask)

    def _verify_cached(self, token: str) -> VerifyResult:
        with self._lock:
            ask = _vcache.Ask()
            hit = self._cache_lookup(token, ask)
            if hit is not None:
                return hit
            # The epoch in ask was read before this request is sent: a
            # Revoke answered after that has moved it, and the answer below
            # is then never used.
            result = self._call(
                "verify", _wire.verify_request_reporting(token, ask.report), None
            )
            self._cache.put(token, ask, _vcache._mono_ms(), result)
            return result
    # ---- the whole life of a token (issue 17) ----

    def lookup(
        self,
        domain: str,
        token_id: Optional[str] = None,
        *,
        token: Optional[str] = None,
        actor: Optional[str] = None,
    ) -> TokenInfo:
        """A token's info without using it (last_used_at and the counters do
        not move): by ``token_id``, or by the secret ``token`` (never
        logged). Another domain's token is NotFound, as none is."""
        return self._call(
            "lookup", _wire.lookup_request(domain, token_id, token), actor
        )

    def edit(
        self,
        domain: str,
        token_id: str,
        *,
        label: Optional[str] = None,
        metadata: Optional[str] = None,
        expires_at: Optional[int] = None,
        scopes: Optional[Sequence[str]] = None,
        actor: Optional[str] = None,
    ) -> Edited:
        """Changes what is not None: ``metadata`` "" removes it,
        ``expires_at`` 0 removes the expiry (within the domain's policy),
        ``scopes`` only narrows. Never resent by the client."""
        return self._call(
            "edit",
            _wire.edit_request(domain, token_id, label, metadata, expires_at, scopes),
            actor,
        )

    def roll(
        self,
        domain: str,
        token_id: str,
        grace_ms: int = 0,
        *,
        actor: Optional[str] = None,
    ) -> Rolled:
        """Replaces a token: the new secret is ``.token``, shown this once;
        the old one expires after ``grace_ms`` (0: now). Never resent by the
        client."""
        return self._call(
            "roll", _wire.roll_request(domain, token_id, grace_ms), actor
        )

    # ---- issue 17: revocation in bulk, leaked tokens, domain policies ----

    def bulk_revoke(
        self,
        domain: str,
        *,
        token_ids: Sequence[str] = (),
        created_by: str = "",
        all: bool = False,
        created_before: int = 0,
        actor: Optional[str] = None,
    ) -> BulkRevoked:
        """Revokes, in one transaction, the tokens one selector names: these
        ids (at most 1000; an unknown one revokes nothing and raises
        NotFound), every token created_by made, all of the domain's, or every
        token created before created_before (Unix ms). A write: not resent
        after a lost answer."""
        return self._call(
            "bulk_revoke",
            _wire.bulk_revoke_request(
                domain, token_ids, created_by, all, created_before
            ),
            actor,
        )

    def revoke_leaked(self, tokens: Sequence[str], source: str = "") -> LeaksReported:
        """For a --leak-reporter identity or an operator: secrets found in
        public at source (a URL). Active ones are revoked and audited as
        leaked; found says, for each, whether it is one of tokend's tokens."""
        return self._call(
            "revoke_leaked", _wire.revoke_leaked_request(tokens, source), None
        )

    def set_domain_policy(
        self, domain: str, policy: DomainPolicy, *, actor: Optional[str] = None
    ) -> DomainPolicy:
        """Operators only: replaces domain's policy (updated_* ignored)."""
        return self._call(
            "set_domain_policy",
            _wire.set_domain_policy_request(domain, policy),
            actor,
        )

    def get_domain_policy(
        self, domain: str, *, actor: Optional[str] = None
    ) -> DomainPolicy:
        """A domain's policy (all zero: none set)."""
        return self._call(
            "get_domain_policy", _wire.get_domain_policy_request(domain), actor
        )
