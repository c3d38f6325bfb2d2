"""The blocking client's Verify cache (tokend._vcache) against real tokends:
a revoke seen at once, restarts, a stopped or killed tokend, expiry, the
bound, and the hits reported back to tokend's counters and last_used_at.
No test waits on a fixed time: each waits for the condition it needs."""

from __future__ import annotations

import asyncio
import os
import select
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

import tokend
from tokend import _vcache
from tokend.types import VerifyResult

from conftest import START_TIMEOUT_S, frame, read_frame, wait_for
from tokend._proto import tokend_pb2 as pb

DOMAIN = "vcache.example"


def wall_ms():
    return time.time_ns() // 1_000_000


def hits(c):
    return c.cache_stats().hits


def cached_twice(c, token):
    """Verifies token twice: the first asks tokend, the second is a hit."""
    before = c.cache_stats()
    assert c.verify(token).valid
    assert c.verify(token).valid
    after = c.cache_stats()
    assert after.hits == before.hits + 1, (before, after)


# ---- the table alone (no tokend) ----


def _result(i, expires_at=0):
    return VerifyResult(True, "VALID", f"tok_{i}", DOMAIN, "l", (), expires_at)


def test_bound_holds_under_many_distinct_tokens():
    cache = _vcache.VerifyCache(1000)
    for i in range(200_000):
        ask = _vcache.Ask()
        ask.cacheable = True
        cache.put(f"tkd_{i}", ask, 0, _result(i))
        assert len(cache._table) <= 1000
    assert len(cache._table) == 1000
    # The newest are held, and no key is the token itself.
    assert cache.key("tkd_199999") in cache._table
    assert cache.key("tkd_0") not in cache._table
    assert all(len(k) == 16 for k in cache._table)


def test_only_valid_answers_are_held():
    cache = _vcache.VerifyCache(10)
    ask = _vcache.Ask()
    ask.cacheable = True
    for reason in ("REVOKED", "EXPIRED", "UNKNOWN", "MALFORMED"):
        cache.put("tkd_x", ask, 0, VerifyResult(False, reason))
    assert len(cache._table) == 0
    # An answer asked under a region since dropped is not held either.
    ask.seq = cache.region_seq + 1
    cache.put("tkd_x", ask, 0, _result(1))
    assert len(cache._table) == 0


def test_cache_size_must_be_positive():
    with pytest.raises(ValueError):
        tokend.Client("/nonexistent", cache_size=0)


# ---- against tokend ----


@pytest.fixture
def one(tokend_factory):
    t = tokend_factory("--last-used-granularity-ms", "100")
    admin = tokend.Client(t.socket)
    c = tokend.Client(t.socket, cache_size=1000)
    yield t, admin, c
    c.close()
    admin.close()


_REVOKER = r"""
import sys, tokend
c = tokend.Client(sys.argv[1])
for line in sys.stdin:
    c.revoke(sys.argv[2], line.strip())
    sys.stdout.write("ok\n")
    sys.stdout.flush()
"""


def test_revoke_by_another_process_then_cached_verify_is_revoked(tokend_factory):
    """Once another process's Revoke has returned, the cached answer is
    never used again: over many repetitions, each token cached (a hit)
    right before its revoke, and verified in a loop while the revoke is
    under way. --last-used-granularity-ms 0 has every other Verify of
    the token carry its hit to tokend, so that Verifies are in flight
    while the revoke is applied."""
    t = tokend_factory("--last-used-granularity-ms", "0")
    admin = tokend.Client(t.socket)
    c = tokend.Client(t.socket, cache_size=1000)
    n = 2000
    issued = [admin.issue(DOMAIN, f"race {i}") for i in range(n)]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    revoker = subprocess.Popen(
        [sys.executable, "-c", _REVOKER, t.socket, DOMAIN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        for i, iss in enumerate(issued):
            cached_twice(c, iss.token)
            revoker.stdin.write(iss.info.id + "\n")
            revoker.stdin.flush()
            # Verifies racing the revoke until it has returned: an answer
            # tokend gave before the revoke must not be cached under the
            # epoch after it.
            while not select.select([revoker.stdout], [], [], 0)[0]:
                c.verify(iss.token)
            assert revoker.stdout.readline() == "ok\n"
            r = c.verify(iss.token)
            assert (r.valid, r.reason) == (False, "REVOKED"), f"repetition {i}"
    finally:
        revoker.stdin.close()
        revoker.wait(30)
    s = c.cache_stats()
    assert s.hits >= n
    assert s.flushes >= n
    c.close()
    admin.close()


def test_restart_drops_cache_and_maps_the_new_region(one):
    t, admin, c = one
    iss = admin.issue(DOMAIN, "restarted")
    cached_twice(c, iss.token)
    before = c.cache_stats()
    admin.close()
    t.terminate()
    # A tokend that shut down retired its page.
    assert not c.cache_stats().fresh
    t.start_again()
    # Not from the cache: asked of the new tokend.
    assert c.verify(iss.token).valid
    after = c.cache_stats()
    assert after.hits == before.hits
    assert after.stale == before.stale + 1
    # The next maps the new region and caches; the one after is a hit.
    cached_twice(c, iss.token)
    after = c.cache_stats()
    assert after.generation not in (0, before.generation)


def test_stopped_tokend_cached_answers_stop_at_the_bound(tokend_factory):
    t = tokend_factory()
    admin = tokend.Client(t.socket)
    # A short timeout: the Verify that reaches a stopped tokend.
    c = tokend.Client(t.socket, timeout=0.3, cache_size=10)
    iss = admin.issue(DOMAIN, "stopped")
    cached_twice(c, iss.token)
    n = hits(c)
    os.kill(t.proc.pid, signal.SIGSTOP)
    try:
        wait_for(
            lambda: not c.cache_stats().fresh,
            START_TIMEOUT_S,
            "the heartbeat of a stopped tokend to age past its bound",
        )
        with pytest.raises(tokend.errors.Timeout):
            c.verify(iss.token)
        assert hits(c) == n
        assert c.cache_stats().stale >= 1
    finally:
        os.kill(t.proc.pid, signal.SIGCONT)
    wait_for(lambda: c.cache_stats().fresh, START_TIMEOUT_S, "a fresh heartbeat")
    assert c.verify(iss.token).valid
    assert hits(c) == n + 1
    c.close()
    admin.close()


def test_killed_then_restarted_tokend_revoke_is_seen(one):
    """A killed tokend's page looks alive until the bound, but its socket
    closes at once: a tokend restarted at once takes a Revoke, and the
    caching client answers REVOKED, not its cached VALID."""
    t, admin, c = one
    iss = admin.issue(DOMAIN, "killed")
    cached_twice(c, iss.token)
    n = hits(c)
    admin.close()
    t.kill()
    t.start_again()
    with tokend.Client(t.socket) as other:
        other.revoke(DOMAIN, iss.info.id)
    r = c.verify(iss.token)
    assert (r.valid, r.reason) == (False, "REVOKED")
    assert hits(c) == n


def test_expiry_honoured_from_the_cache(tokend_factory):
    # tokend's default --last-used-granularity-ms (60 s): no Verify goes
    # to tokend to report hits, so only the expiry can end the hits.
    t = tokend_factory()
    admin = tokend.Client(t.socket)
    c = tokend.Client(t.socket, cache_size=10)
    expires_at = wall_ms() + 2000
    iss = admin.issue(DOMAIN, "expiring", expires_at=expires_at)
    assert c.verify(iss.token).valid
    # Hits while it is valid (a margin so that none is asked across it).
    n = 0
    while wall_ms() < expires_at - 200:
        assert c.verify(iss.token).valid
        n += 1
        if n >= 100:
            break
    assert hits(c) == n
    wait_for(lambda: wall_ms() >= expires_at, START_TIMEOUT_S, "the expiry")
    r = c.verify(iss.token)
    assert (r.valid, r.reason) == (False, "EXPIRED")
    assert hits(c) == n
    c.close()
    admin.close()


def test_bound_honoured_against_tokend(tokend_factory):
    t = tokend_factory()
    admin = tokend.Client(t.socket)
    c = tokend.Client(t.socket, cache_size=20)
    issued = [admin.issue(DOMAIN, f"bound {i}") for i in range(50)]
    for iss in issued:
        assert c.verify(iss.token).valid
        assert c.cache_stats().entries <= 20
    s = c.cache_stats()
    assert (s.entries, s.capacity) == (20, 20)
    # The newest is held; the oldest was replaced.
    n = s.hits
    assert c.verify(issued[-1].token).valid
    assert hits(c) == n + 1
    assert c.verify(issued[0].token).valid
    assert hits(c) == n + 1
    c.close()
    admin.close()


def test_no_region_no_cache(fake_tokend):
    """A tokend that answers GetCacheRegion without a descriptor (an old
    or unwilling one): nothing is cached, every Verify is asked."""
    seen = []

    def handler(conn):
        while True:
            body = read_frame(conn)
            if body is None:
                return
            req = pb.Request.FromString(body)
            method = req.WhichOneof("method")
            seen.append(method)
            resp = pb.Response(call_id=req.call_id)
            resp.status.SetInParent()
            if method == "verify":
                resp.verify.valid = True
                resp.verify.reason = pb.INVALID_REASON_VALID
                resp.verify.token_id = "tok_1"
            else:
                getattr(resp, method).SetInParent()
            conn.sendall(frame(resp.SerializeToString()))

    f = fake_tokend(handler)
    with tokend.Client(f.socket, cache_size=10) as c:
        for _ in range(3):
            assert c.verify("tkd_" + "a" * 38).valid
        s = c.cache_stats()
        assert (s.hits, s.entries, s.generation) == (0, 0, 0)
    assert seen == ["get_cache_region", "verify", "verify", "verify"]


def test_cached_hits_reach_tokend_counters_and_last_used_at(one):
    t, admin, c = one
    iss = admin.issue(DOMAIN, "counted")
    assert c.verify(iss.token).valid  # a miss
    first_done = wall_ms()
    for _ in range(5):
        assert c.verify(iss.token).valid
    # Hits until one is due to be reported (the clock, seen through the
    # counters).
    deadline = time.monotonic() + START_TIMEOUT_S
    while c.cache_stats().reported == 0:
        assert c.verify(iss.token).valid
        assert time.monotonic() < deadline, "no hit was reported"
    s = c.cache_stats()
    assert s.reported >= 5
    c.close()
    admin.close()
    # The counters and last_used_at reach the database at shutdown.
    t.terminate()
    db = sqlite3.connect(t.db)
    try:
        (valid,) = db.execute(
            "SELECT valid FROM verify_counts WHERE domain = ?", (DOMAIN,)
        ).fetchone()
        (last_used,) = db.execute(
            "SELECT last_used_at FROM tokens WHERE id = ?", (iss.info.id,)
        ).fetchone()
    finally:
        db.close()
    # The miss, the hits reported, and the Verify that reported them.
    assert valid == 1 + s.reported + 1
    # Moved by the reporting Verify, after the first one.
    assert last_used > first_done


# ---- AsyncClient: the same cache ----


def test_async_revoke_by_another_process_then_cached_verify_is_revoked(
    tokend_factory,
):
    t = tokend_factory("--last-used-granularity-ms", "0")
    n = 500
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(sys.path))
    revoker = subprocess.Popen(
        [sys.executable, "-c", _REVOKER, t.socket, DOMAIN],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env,
        text=True,
    )

    async def main():
        async with tokend.AsyncClient(t.socket) as admin, tokend.AsyncClient(
            t.socket, cache_size=1000
        ) as c:
            issued = await asyncio.gather(
                *(admin.issue(DOMAIN, f"async race {i}") for i in range(n))
            )
            for i, iss in enumerate(issued):
                assert (await c.verify(iss.token)).valid
                before = c.cache_stats().hits
                assert (await c.verify(iss.token)).valid
                assert c.cache_stats().hits == before + 1
                revoker.stdin.write(iss.info.id + "\n")
                revoker.stdin.flush()
                while not select.select([revoker.stdout], [], [], 0)[0]:
                    await c.verify(iss.token)
                assert revoker.stdout.readline() == "ok\n"
                r = await c.verify(iss.token)
                assert (r.valid, r.reason) == (False, "REVOKED"), f"repetition {i}"
            return c.cache_stats()

    try:
        s = asyncio.run(main())
    finally:
        revoker.stdin.close()
        revoker.wait(30)
    assert s.hits >= n
    assert s.flushes >= n
    assert s.generation != 0


def test_async_killed_then_restarted_tokend_revoke_is_seen(one):
    t, admin, _ = one
    iss = admin.issue(DOMAIN, "async killed")
    admin.close()

    async def main():
        async with tokend.AsyncClient(t.socket, cache_size=10) as c:
            assert (await c.verify(iss.token)).valid
            assert (await c.verify(iss.token)).valid
            n = c.cache_stats().hits
            assert n == 1
            t.kill()
            t.start_again()
            with tokend.Client(t.socket) as other:
                other.revoke(DOMAIN, iss.info.id)
            r = await c.verify(iss.token)
            assert (r.valid, r.reason) == (False, "REVOKED")
            assert c.cache_stats().hits == n

    asyncio.run(main())
