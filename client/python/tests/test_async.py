"""AsyncClient: pipelining on one connection, answers matched by call_id,
reconnecting, timeouts. asyncio.run per test (no pytest-asyncio in
Debian 12's python3-pytest)."""

from __future__ import annotations

import asyncio
import time

import pytest

import tokend
from tokend._proto import tokend_pb2 as pb

from conftest import drop_second_call, frame, read_frame


def run(coro):
    return asyncio.run(coro)


def test_pipelined_calls_on_one_connection(server):
    async def main():
        async with tokend.AsyncClient(server.socket) as c:
            issued = await c.issue("async.example", "piped", ["read"])
            # Verifies, WhoAmIs and a List all in flight together.
            calls = [c.verify(issued.token) for _ in range(300)]
            calls += [c.verify("tkd_nope"), c.whoami()]
            calls.append(c.list_page("async.example"))
            results = await asyncio.gather(*calls)
            conn = c._conn
            return issued, results, conn

    issued, results, conn = run(main())
    assert all(r.valid and r.token_id == issued.info.id for r in results[:300])
    assert results[300].reason == "MALFORMED"
    assert results[301].operator
    assert [t.id for t in results[302].tokens] == [issued.info.id]
    assert conn._next_id == 304  # one connection carried every call


def test_answers_out_of_order_are_matched_by_call_id(fake_tokend):
    n = 20

    def handler(conn):
        # Reads every request before answering any, then answers in
        # reverse order: only call_id matching gets them right.
        reqs = []
        while len(reqs) < n:
            body = read_frame(conn)
            if body is None:
                return
            reqs.append(pb.Request.FromString(body))
        for r in reversed(reqs):
            resp = pb.Response(call_id=r.call_id)
            resp.status.SetInParent()
            resp.verify.valid = True
            resp.verify.reason = pb.INVALID_REASON_VALID
            resp.verify.label = r.verify.token
            conn.sendall(frame(resp.SerializeToString()))
        read_frame(conn)

    f = fake_tokend(handler)

    async def main():
        async with tokend.AsyncClient(f.socket) as c:
            return await asyncio.gather(*(c.verify(f"token {i}") for i in range(n)))

    results = run(main())
    assert [r.label for r in results] == [f"token {i}" for i in range(n)]
    assert f.accepted == 1


def test_errors_and_list_iterators(server):
    async def main():
        async with tokend.AsyncClient(server.socket) as c:
            for i in range(5):
                await c.issue("aiter.example", f"t{i}")
            labels = [t.label async for t in c.list("aiter.example", page_size=2)]
            events = [e async for e in c.list_audit_events("aiter.example", 0, 2)]
            with pytest.raises(tokend.NotFound) as e:
                await c.revoke("aiter.example", "tok_AAAAAAAAAAAAAAAAAAAA")
            check = await c.verify_audit_log()
            g = await c.grant_domain_admin("aiter.example", "carol")
            admins = await c.list_domain_admins("aiter.example")
            n = await c.revoke_domain_admin("aiter.example", "carol")
            return labels, events, e.value, check, g, admins, n

    labels, events, err, check, g, admins, n = run(main())
    assert labels == [f"t{i}" for i in reversed(range(5))]
    assert [e.method for e in events] == ["Issue"] * 5
    assert err.code == 5
    assert check.ok
    assert not g.already_admin and [a.user for a in admins] == ["carol"] and n == 0


def test_idempotent_call_reconnects(tokend_factory):
    t = tokend_factory("--idle-timeout-ms", "100")

    async def main():
        async with tokend.AsyncClient(t.socket) as c:
            issued = await c.issue("aidle.example", "first")
            await _closed_by_peer(c)
            assert (await c.verify(issued.token)).valid
            await _closed_by_peer(c)
            await c.issue("aidle.example", "second")
            return [x.label async for x in c.list("aidle.example")]

    assert run(main()) == ["second", "first"]


def test_issue_is_never_resent_verify_is(fake_tokend):
    seen = []
    f = fake_tokend(drop_second_call(seen))

    async def main():
        async with tokend.AsyncClient(f.socket) as c:
            await c.whoami()
            with pytest.raises(tokend.ConnectionClosed):
                await c.issue("once.example", "lost")
            assert seen == ["who_am_i", "issue"] and f.accepted == 1
            await c.whoami()  # the next call reconnects
            assert f.accepted == 2

    run(main())
    seen.clear()
    g = fake_tokend(drop_second_call(seen))

    async def verify():
        async with tokend.AsyncClient(g.socket) as c:
            await c.whoami()
            return await c.verify("tkd_x")

    assert run(verify()).valid is False
    assert seen == ["who_am_i", "verify", "verify"] and g.accepted == 2


async def _closed_by_peer(c):
    """Waits until the client's reader task saw tokend close the idle
    connection."""
    deadline = time.monotonic() + 30
    while not c._conn.closed:
        assert time.monotonic() < deadline, "tokend did not close the connection"
        await asyncio.sleep(0.01)


def test_timeout(fake_tokend):
    def handler(conn):
        read_frame(conn)  # never answers
        read_frame(conn)

    f = fake_tokend(handler)

    async def main():
        async with tokend.AsyncClient(f.socket, timeout=0.2) as c:
            with pytest.raises(tokend.Timeout) as e:
                await c.whoami()
            return e.value, c._conn._pending

    err, pending = run(main())
    assert err.code == 4 and pending == {}


def test_connection_level_error(fake_tokend):
    def handler(conn):
        read_frame(conn)
        resp = pb.Response()
        resp.status.code = 8
        resp.status.message = "too much input buffered"
        conn.sendall(frame(resp.SerializeToString()))
        conn.close()

    f = fake_tokend(handler)

    async def main():
        async with tokend.AsyncClient(f.socket) as c:
            with pytest.raises(tokend.ResourceExhausted) as e:
                await c.whoami()
            return e.value

    err = run(main())
    assert "too much input buffered" in err.message
    # Not retried: an explicit refusal, not an idle close.
    assert f.accepted == 1
