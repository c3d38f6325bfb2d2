"""The asyncio client: many calls in flight on one connection.

    async with tokend.AsyncClient() as c:
        results = await asyncio.gather(*(c.verify(t) for t in tokens))

Each call gets its own call_id and waits for the answer carrying it; the
connection's protocol hands answers to their callers, whatever order tokend
sends them in (docs/PROTOCOL.md, "Pipelining and ordering").
"""

from __future__ import annotations

import array
import asyncio
import os
import select
import socket as _socket
from typing import AsyncIterator, Dict, Optional, Sequence

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


# Past this many bytes queued in the socket's transport, callers wait.
_HIGH_WATER_BYTES = 1 << 20


_READ_CHUNK = 65536
_FD_BYTES = array.array("i").itemsize
# A caching connection's first call, GetCacheRegion, made before the
# connection's protocol takes over.
_REGION_CALL_ID = 1


def _passed_fds(ancillary) -> list:
    fds = array.array("i")
    for level, kind, cdata in ancillary:
        if level == _socket.SOL_SOCKET and kind == _socket.SCM_RIGHTS:
            fds.frombytes(cdata[: len(cdata) - len(cdata) % _FD_BYTES])
    return list(fds)


async def _readable(loop, sock) -> None:
    fut = loop.create_future()
    loop.add_reader(sock.fileno(), lambda: fut.done() or fut.set_result(None))
    try:
        await fut
    finally:
        loop.remove_reader(sock.fileno())


def _expire(fut: asyncio.Future, timeout: float) -> None:
    if not fut.done():
        fut.set_exception(
            errors.Timeout(f"no answer within {timeout} s", errors.DEADLINE_EXCEEDED)
        )


class _Connection(asyncio.Protocol):
    """One socket and the calls waiting on it, as an asyncio protocol: each
    read hands every whole answer frame in it to its caller, no task or
    await per answer. Once closed it stays closed: the client opens a new
    one."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._transport: Optional[asyncio.Transport] = None
        self._pending: Dict[int, asyncio.Future] = {}
        self._next_id = 0
        self.closed = False
        # Frames of the calls made since the loop last ran its callbacks:
        # written together by _flush, one system call (and one wake-up of
        # tokend) for every call a burst of coroutines makes, instead of
        # one each.
        self._out: list = []
        self._buf = bytearray()
        # Why the connection ended when it was not a plain close: tokend's
        # call_id 0 answer, or a protocol error.
        self._err: Optional[errors.TokendError] = None
        self._writable: Optional[asyncio.Future] = None
        self._lost = self._loop.create_future()
        # A caching client's connection: tokend's GetCacheRegion answer
        # (None: refused) and the descriptors that came with it, for the
        # client to take.
        self.region_answer = None
        self.region_fds: list = []

    @classmethod
    async def open(
        cls, path: str, timeout: Optional[float], want_region: bool = False
    ) -> "_Connection":
        loop = asyncio.get_running_loop()
        try:
            if want_region:
                conn = await asyncio.wait_for(
                    cls._open_with_region(loop, path), timeout
                )
            else:
                _, conn = await asyncio.wait_for(
                    loop.create_unix_connection(cls, path), timeout
                )
        except asyncio.TimeoutError:
            raise errors.Timeout(f"cannot connect to {path} within {timeout} s") from None
        except OSError as e:
            raise errors.ConnectionClosed(
                f"cannot connect to {path}: {e.strerror or e}"
            ) from None
        return conn

    @classmethod
    async def _open_with_region(cls, loop, path: str) -> "_Connection":
        """Connects and asks GetCacheRegion first, on the bare socket: its
        descriptor comes as SCM_RIGHTS, which asyncio's transports do not
        read. Then hands the socket to a transport."""
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        sock.setblocking(False)
        fds: list = []
        try:
            await loop.sock_connect(sock, path)
            await loop.sock_sendall(
                sock,
                _wire.frame(
                    _REGION_CALL_ID,
                    "get_cache_region",
                    _wire.get_cache_region_request(),
                    None,
                ),
            )
            buf = bytearray()
            while True:
                if len(buf) >= _wire.HEADER_BYTES:
                    end = _wire.HEADER_BYTES + _wire.body_length(
                        bytes(buf[: _wire.HEADER_BYTES])
                    )
                    if len(buf) >= end:
                        break
                await _readable(loop, sock)
                try:
                    data, anc, _, _ = sock.recvmsg(
                        _READ_CHUNK, _socket.CMSG_SPACE(4 * _FD_BYTES)
                    )
                except (BlockingIOError, InterruptedError):
                    continue
                fds.extend(_passed_fds(anc))
                if not data:
                    raise errors.ConnectionClosed("tokend closed the connection")
                buf += data
            resp = _wire.decode(bytes(buf[_wire.HEADER_BYTES : end]))
            if resp.call_id == _wire.CONNECTION_CALL_ID:
                raise _wire.connection_error(resp)
            _, conn = await loop.create_unix_connection(cls, sock=sock)
        except BaseException:
            sock.close()
            for fd in fds:
                os.close(fd)
            raise
        conn._next_id = _REGION_CALL_ID
        if resp.status.code == 0 and resp.WhichOneof("result") == "get_cache_region":
            conn.region_answer = resp.get_cache_region
        conn.region_fds = fds
        # tokend answers only what it was asked: nothing follows, but what
        # would is handed on.
        if len(buf) > end:
            conn.data_received(bytes(buf[end:]))
        return conn

    def peer_alive(self) -> bool:
        """False once tokend's end of the socket is closed (one poll, no
        wait: a late answer waiting to be read is no sign of death)."""
        if self.closed or self._transport is None:
            return False
        sock = self._transport.get_extra_info("socket")
        if sock is None:
            return False
        p = select.poll()
        p.register(sock.fileno(), select.POLLIN | select.POLLRDHUP)
        try:
            events = p.poll(0)
        except InterruptedError:
            return True  # look again next tick
        dead = select.POLLHUP | select.POLLRDHUP | select.POLLERR | select.POLLNVAL
        return not any(ev & dead for _, ev in events)

    # ---- asyncio.Protocol ----

    def connection_made(self, transport) -> None:
        self._transport = transport
        transport.set_write_buffer_limits(high=_HIGH_WATER_BYTES)

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        pos = 0
        try:
            while len(buf) - pos >= _wire.HEADER_BYTES:
                n = _wire.body_length(bytes(buf[pos : pos + _wire.HEADER_BYTES]))
                end = pos + _wire.HEADER_BYTES + n
                if len(buf) < end:
                    break  # the rest of this frame comes with a later read
                resp = _wire.decode(bytes(buf[pos + _wire.HEADER_BYTES : end]))
                pos = end
                if resp.call_id == _wire.CONNECTION_CALL_ID:
                    self._fail(_wire.connection_error(resp))
                    return
                fut = self._pending.pop(resp.call_id, None)
                # None: the answer of a call that timed out.
                if fut is not None and not fut.done():
                    fut.set_result(resp)
        except errors.TokendError as e:  # a protocol error
            self._fail(e)
            return
        del buf[:pos]

    def connection_lost(self, exc) -> None:
        self._shut()
        if not self._lost.done():
            self._lost.set_result(None)

    def pause_writing(self) -> None:
        self._writable = self._loop.create_future()

    def resume_writing(self) -> None:
        w, self._writable = self._writable, None
        if w is not None and not w.done():
            w.set_result(None)

    # ----

    def _fail(self, err: errors.TokendError) -> None:
        if self._err is None:
            self._err = err
        self._shut()
        assert self._transport is not None
        self._transport.close()

    def _shut(self) -> None:
        """Fails every call in flight: the connection is over."""
        self.closed = True
        err = self._err or errors.ConnectionClosed("tokend closed the connection")
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)
        self.resume_writing()

    def _flush(self) -> None:
        out, self._out = self._out, []
        if not self.closed and out:
            assert self._transport is not None
            self._transport.write(b"".join(out))

    async def call(
        self, member: str, request, actor: Optional[str], timeout: Optional[float]
    ):
        if self.closed:
            raise errors.ConnectionClosed("tokend closed the connection")
        self._next_id += 1
        call_id = self._next_id
        fut = self._loop.create_future()
        self._pending[call_id] = fut
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(_wire.frame(call_id, member, request, actor))
        # Backpressure: while tokend does not read (past _HIGH_WATER_BYTES
        # queued), callers wait here.
        if self._writable is not None:
            await self._writable
        # A timer per call rather than asyncio.wait_for, which wraps each
        # call in a task of its own.
        timer = None
        if timeout is not None:
            timer = self._loop.call_later(timeout, _expire, fut, timeout)
        try:
            return await fut
        finally:
            if timer is not None:
                timer.cancel()
            # Answered calls are gone already; a timed-out or cancelled
            # one is forgotten, and its late answer skipped.
            self._pending.pop(call_id, None)

    async def aclose(self) -> None:
        if not self.closed:
            self._fail(errors.ConnectionClosed("the client closed the connection"))
        await self._lost


class AsyncClient:
    """An asyncio tokend client; the same methods as Client, as coroutines
    (list and list_audit_events are async iterators).

    Calls made concurrently (asyncio.gather, tasks) are pipelined on one
    connection. The connection is opened on the first call and reopened
    after tokend closed it; a call that changes nothing whose connection
    closed before its answer is sent once more on a new connection, a write
    never is (``errors.ConnectionClosed``; it may have committed).

    ``cache_size``: the Verify cache, as Client's (README.md, "Verify
    cache"); each new connection asks for tokend's region first.
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
        self._conn: Optional[_Connection] = None
        self._connecting: Optional[asyncio.Lock] = None
        self._cache = (
            _vcache.VerifyCache(cache_size) if cache_size is not None else None
        )

    async def connect(self) -> None:
        await self._connection()

    async def close(self) -> None:
        conn, self._conn = self._conn, None
        if self._cache is not None:
            self._cache.close()
        if conn is not None:
            await conn.aclose()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def _connection(self):
        """The open connection, and whether this call opened it."""
        conn = self._conn
        if conn is not None and not conn.closed:
            return conn, False  # the common case, without the lock
        if self._connecting is None:
            self._connecting = asyncio.Lock()
        async with self._connecting:
            if self._conn is not None and not self._conn.closed:
                return self._conn, False
            if self._conn is not None:
                await self._conn.aclose()
            self._conn = None
            self._conn = await _Connection.open(
                self.socket_path, self.timeout, self._cache is not None
            )
            if self._cache is not None:
                self._take_region(self._conn)
            return self._conn, True

    def _take_region(self, conn: _Connection) -> None:
        """A new connection: maybe another tokend, so its region, not the
        old one's; none (refused, no descriptor, not a sealed region): no
        cache on this connection."""
        cache = self._cache
        cache.drop_region()
        cache.region_wanted = False  # asked once per connection, at its start
        fds, conn.region_fds = conn.region_fds, []
        try:
            if conn.region_answer is not None and fds:
                cache.attach(fds[-1], conn.region_answer.generation)
        except (ValueError, OSError):
            pass
        finally:
            for fd in fds:
                os.close(fd)

    async def _call(self, member: str, request, actor: Optional[str]):
        method = _wire.METHODS[member]
        actor = actor if actor is not None else self.actor
        for attempt in (0, 1):
            conn, fresh = await self._connection()
            try:
                resp = await conn.call(member, request, actor, self.timeout)
            except errors.ConnectionClosed:
                # A connection that was open before this call may have been
                # closed while idle: one more try, for a call that changes
                # nothing.
                if method.idempotent and not fresh and attempt == 0:
                    continue
                raise
            return method.convert(_wire.result(resp, member))
        raise AssertionError("unreachable")

    # ---- methods: see Client for each one's contract ----

    async def verify(self, token: str) -> VerifyResult:
        if self._cache is None:
            return await self._call("verify", _wire.verify_request(token), None)
        return await self._verify_cached(token)

    async def issue(
        self,
        domain: str,
        label: str,
        scopes: Sequence[str] = (),
        expires_at: int = 0,
        *,
        actor: Optional[str] = None,
        metadata: str = "",
    ) -> Issued:
        return await self._call(
            "issue",
            _wire.issue_request(domain, label, scopes, expires_at, metadata),
            actor,
        )

    async def revoke(
        self, domain: str, token_id: str, *, actor: Optional[str] = None
    ) -> Revoked:
        return await self._call(
            "revoke", _wire.revoke_request(domain, token_id), actor
        )

    async def list_page(
        self,
        domain: str,
        page_token: str = "",
        page_size: int = 0,
        include_revoked: bool = False,
        *,
        actor: Optional[str] = None,
        expiring_within_ms: int = 0,
    ) -> TokenPage:
        return await self._call(
            "list",
            _wire.list_request(
                domain, page_size, page_token, include_revoked, expiring_within_ms
            ),
            actor,
        )

    async def list(
        self,
        domain: str,
        page_size: int = 0,
        include_revoked: bool = False,
        *,
        actor: Optional[str] = None,
        expiring_within_ms: int = 0,
    ) -> AsyncIterator[TokenInfo]:
        page_token = ""
        while True:
            page = await self.list_page(
                domain,
                page_token,
                page_size,
                include_revoked,
                actor=actor,
                expiring_within_ms=expiring_within_ms,
            )
            for t in page.tokens:
                yield t
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    async def grant_domain_admin(
        self, domain: str, user: str, *, actor: Optional[str] = None
    ) -> Granted:
        return await self._call(
            "grant_domain_admin", _wire.grant_domain_admin_request(domain, user), actor
        )

    async def revoke_domain_admin(
        self,
        domain: str,
        user: str,
        revoke_their_tokens: bool = False,
        *,
        actor: Optional[str] = None,
    ) -> int:
        return await self._call(
            "revoke_domain_admin",
            _wire.revoke_domain_admin_request(domain, user, revoke_their_tokens),
            actor,
        )

    async def list_domain_admins(
        self, domain: str, *, actor: Optional[str] = None
    ) -> Sequence[DomainAdmin]:
        return await self._call(
            "list_domain_admins", _wire.list_domain_admins_request(domain), actor
        )

    async def list_audit_events_page(
        self,
        domain: str = "",
        since: int = 0,
        page_token: str = "",
        page_size: int = 0,
        *,
        actor: Optional[str] = None,
    ) -> AuditPage:
        return await self._call(
            "list_audit_events",
            _wire.list_audit_events_request(domain, since, page_size, page_token),
            actor,
        )

    async def list_audit_events(
        self,
        domain: str = "",
        since: int = 0,
        page_size: int = 0,
        *,
        actor: Optional[str] = None,
    ) -> AsyncIterator[AuditEvent]:
        page_token = ""
        while True:
            page = await self.list_audit_events_page(
                domain, since, page_token, page_size, actor=actor
            )
            for e in page.events:
                yield e
            if not page.next_page_token:
                return
            page_token = page.next_page_token

    async def verify_audit_log(
        self,
        anchor_id: int = 0,
        anchor_hash: str = "",
        *,
        actor: Optional[str] = None,
    ) -> AuditLogCheck:
        return await self._call(
            "verify_audit_log",
            _wire.verify_audit_log_request(anchor_id, anchor_hash),
            actor,
        )

    async def whoami(self, *, actor: Optional[str] = None) -> WhoAmI:
        return await self._call("who_am_i", _wire.who_am_i_request(), actor)

    async def server_status(self) -> ServerStatus:
        """How tokend is doing (verifiers and operators)."""
        return await self._call(
            "server_status", _wire.server_status_request(), None
        )

    # ---- the Verify cache (issue 15, section 2; tokend._vcache) ----

    def cache_stats(self) -> Optional[_vcache.CacheStats]:
        """As Client.cache_stats()."""
        return self._cache.stats() if self._cache is not None else None

    async def _verify_cached(self, token: str) -> VerifyResult:
        cache = self._cache
        if self._conn is None or self._conn.closed:
            await self._connection()  # maps the region of the new one
        ask = _vcache.Ask()
        rg = cache.region
        # The lookup runs without an await: no other coroutine interleaves
        # between its epoch read and its use.
        if rg is not None:
            mono = _vcache._mono_ms()
            alive = True
            # A killed tokend's page looks alive until the bound; its
            # socket tells at once (looked at once per millisecond). The
            # connection's own close follows when the loop reads its end;
            # the next connection maps a new region.
            if mono != cache.conn_checked_ms:
                cache.conn_checked_ms = mono
                alive = self._conn.peer_alive()
            if not rg.fresh(mono):
                cache.stale += 1
            elif not alive:
                cache.drop_region()
                cache.stale += 1
            else:
                hit = cache.lookup(token, mono, ask)
                if hit is not None:
                    return hit
        # The epoch in ask was read before this request is sent.
        result = await self._call(
            "verify", _wire.verify_request_reporting(token, ask.report), None
        )
        cache.put(token, ask, _vcache._mono_ms(), result)
        return result
    # ---- the whole life of a token (issue 17) ----

    async def lookup(
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
        return await self._call(
            "lookup", _wire.lookup_request(domain, token_id, token), actor
        )

    async def edit(
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
        return await self._call(
            "edit",
            _wire.edit_request(domain, token_id, label, metadata, expires_at, scopes),
            actor,
        )

    async def roll(
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
        return await self._call(
            "roll", _wire.roll_request(domain, token_id, grace_ms), actor
        )

    # ---- issue 17: revocation in bulk, leaked tokens, domain policies ----

    async def bulk_revoke(
        self,
        domain: str,
        *,
        token_ids: Sequence[str] = (),
        created_by: str = "",
        all: bool = False,
        created_before: int = 0,
        actor: Optional[str] = None,
    ) -> BulkRevoked:
        """As Client.bulk_revoke."""
        return await self._call(
            "bulk_revoke",
            _wire.bulk_revoke_request(
                domain, token_ids, created_by, all, created_before
            ),
            actor,
        )

    async def revoke_leaked(
        self, tokens: Sequence[str], source: str = ""
    ) -> LeaksReported:
        """As Client.revoke_leaked."""
        return await self._call(
            "revoke_leaked", _wire.revoke_leaked_request(tokens, source), None
        )

    async def set_domain_policy(
        self, domain: str, policy: DomainPolicy, *, actor: Optional[str] = None
    ) -> DomainPolicy:
        """As Client.set_domain_policy."""
        return await self._call(
            "set_domain_policy",
            _wire.set_domain_policy_request(domain, policy),
            actor,
        )

    async def get_domain_policy(
        self, domain: str, *, actor: Optional[str] = None
    ) -> DomainPolicy:
        """As Client.get_domain_policy."""
        return await self._call(
            "get_domain_policy", _wire.get_domain_policy_request(domain), actor
        )
