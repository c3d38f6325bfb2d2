"""Issue 17 through the Python clients: BulkRevoke, RevokeLeaked and the
domain policies, against a real tokend."""

from __future__ import annotations

import asyncio
import time

import pytest

import tokend
from tokend import errors

DAY_MS = 86400000


def test_bulk_revoke_by_ids_and_all(server):
    with tokend.Client(server.socket) as c:
        a = c.issue("bulk.py.example", "a")
        b = c.issue("bulk.py.example", "b")
        other = c.issue("other.py.example", "o")
        r = c.bulk_revoke("bulk.py.example", token_ids=[a.info.id])
        assert (r.revoked, r.already_revoked) == (1, 0)
        assert c.verify(a.token).reason == "REVOKED"
        assert c.verify(b.token).valid
        r = c.bulk_revoke("bulk.py.example", all=True)
        assert (r.revoked, r.already_revoked) == (1, 1)
        assert c.verify(b.token).reason == "REVOKED"
        assert c.verify(other.token).valid
        # Another domain's id: nothing revoked.
        with pytest.raises(errors.NotFound) as e:
            c.bulk_revoke("bulk.py.example", token_ids=[other.info.id])
        assert other.info.id in str(e.value)
        assert c.verify(other.token).valid
        with pytest.raises(errors.InvalidArgument) as e:
            c.bulk_revoke("bulk.py.example", all=True, created_by="x")
        assert "all" in str(e.value)


def test_revoke_leaked_reports_found(server):
    with tokend.Client(server.socket) as c:
        t = c.issue("leak.py.example", "leaked")
        r = c.revoke_leaked([t.token, "nope"], "https://example.org/paste/1")
        assert r.found == (True, False) and r.revoked == 1
        assert c.verify(t.token).reason == "REVOKED"
        r = c.revoke_leaked([t.token])
        assert r.found == (True,) and r.revoked == 0


def test_domain_policy_set_get_and_enforced(server):
    with tokend.Client(server.socket) as c:
        assert c.get_domain_policy("policy.py.example") == tokend.DomainPolicy()
        p = c.set_domain_policy(
            "policy.py.example",
            tokend.DomainPolicy(
                max_lifetime_ms=DAY_MS, allowed_scopes=("read",), max_active_tokens=1
            ),
        )
        assert p.max_lifetime_ms == DAY_MS and p.updated_by == "uid:0"
        got = c.get_domain_policy("policy.py.example")
        assert got.allowed_scopes == ("read",) and got.max_active_tokens == 1
        now = int(time.time() * 1000)
        with pytest.raises(errors.InvalidArgument) as e:
            c.issue("policy.py.example", "long", ["read"], now + 2 * DAY_MS)
        assert "expires_at" in str(e.value)
        with pytest.raises(errors.InvalidArgument) as e:
            c.issue("policy.py.example", "scope", ["write"], now + DAY_MS // 2)
        assert "scopes" in str(e.value)
        c.issue("policy.py.example", "ok", ["read"], now + DAY_MS // 2)
        with pytest.raises(errors.ResourceExhausted) as e:
            c.issue("policy.py.example", "one too many", ["read"], now + 1000)
        assert "max_active_tokens" in str(e.value)


def test_async_issue17_methods(server):
    async def main():
        async with tokend.AsyncClient(server.socket) as c:
            t = await c.issue("async17.py.example", "a")
            r = await c.bulk_revoke("async17.py.example", created_by="uid:0")
            p = await c.get_domain_policy("async17.py.example")
            leak = await c.revoke_leaked([t.token])
            return r, p, leak

    r, p, leak = asyncio.run(main())
    assert r.revoked == 1 and p == tokend.DomainPolicy()
    assert leak.found == (True,) and leak.revoked == 0
