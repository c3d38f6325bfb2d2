"""Issue 17 through the Python clients: metadata, lookup, edit, roll and
the expiring-soon filter, against a real tokend; edit and roll are never
resent after a broken connection."""

from __future__ import annotations

import asyncio
import time

import pytest

import tokend

from conftest import drop_second_call

HOUR_MS = 3600 * 1000


def now_ms() -> int:
    return int(time.time() * 1000)


def test_metadata_lookup_without_use(server):
    with tokend.Client(server.socket) as c:
        issued = c.issue(
            "py17.example", "meta", ["read"], metadata='{"plan": "pro"}'
        )
        assert issued.info.metadata == '{"plan":"pro"}'
        info = c.lookup("py17.example", issued.info.id)
        assert info.metadata == '{"plan":"pro"}' and info.last_used_at == 0
        by_secret = c.lookup("py17.example", token=issued.token)
        assert by_secret.id == issued.info.id and by_secret.last_used_at == 0
        v = c.verify(issued.token)
        assert v.valid and v.metadata == '{"plan":"pro"}'
        assert c.lookup("py17.example", issued.info.id).last_used_at > 0
        # Another domain's token is as unknown as none.
        with pytest.raises(tokend.NotFound):
            c.lookup("py17-other.example", issued.info.id)
        with pytest.raises(tokend.InvalidArgument) as e:
            c.issue("py17.example", "bad", metadata="[1]")
        assert "metadata" in str(e.value)
        with pytest.raises(ValueError):
            c.lookup("py17.example")


def test_edit_narrows_and_verify_follows(server):
    with tokend.Client(server.socket) as c:
        issued = c.issue(
            "py17.example", "before", ["read", "write"], now_ms() + 2 * HOUR_MS
        )
        soon = now_ms() + HOUR_MS
        edited = c.edit(
            "py17.example",
            issued.info.id,
            label="after",
            metadata='{"a": 1}',
            expires_at=soon,
            scopes=["read"],
        )
        assert edited.info.label == "after" and edited.info.scopes == ("read",)
        assert edited.info.expires_at == soon
        v = c.verify(issued.token)
        assert v.label == "after" and v.scopes == ("read",)
        assert v.metadata == '{"a":1}'
        with pytest.raises(tokend.InvalidArgument) as e:
            c.edit("py17.example", issued.info.id, scopes=["read", "admin"])
        assert "admin" in str(e.value)
        # Nothing changed by the refusal.
        assert c.lookup("py17.example", issued.info.id).scopes == ("read",)


def test_roll_with_grace(server):
    with tokend.Client(server.socket) as c:
        issued = c.issue("py17.example", "rolling", metadata='{"k": "v"}')
        rolled = c.roll("py17.example", issued.info.id, grace_ms=HOUR_MS)
        assert rolled.token not in repr(rolled)
        assert rolled.info.rolled_from == issued.info.id
        assert rolled.previous.rolled_to == rolled.info.id
        assert rolled.info.metadata == '{"k":"v"}'
        assert c.verify(rolled.token).valid and c.verify(issued.token).valid
        with pytest.raises(tokend.FailedPrecondition):
            c.roll("py17.example", issued.info.id)
        with pytest.raises(tokend.InvalidArgument) as e:
            c.roll("py17.example", rolled.info.id, grace_ms=-1)
        assert "grace_ms" in str(e.value)
        expiring = list(
            c.list("py17.example", expiring_within_ms=2 * HOUR_MS)
        )
        assert issued.info.id in [t.id for t in expiring]
        assert rolled.info.id not in [t.id for t in expiring]


def test_async_lookup_edit_roll(server):
    async def main():
        async with tokend.AsyncClient(server.socket) as c:
            issued = await c.issue("py17-async.example", "a", ["x", "y"])
            info = await c.lookup("py17-async.example", token=issued.token)
            assert info.id == issued.info.id
            edited = await c.edit("py17-async.example", info.id, scopes=["x"])
            assert edited.info.scopes == ("x",)
            rolled = await c.roll("py17-async.example", info.id)
            v = await c.verify(issued.token)
            assert not v.valid and v.reason == "EXPIRED"
            assert (await c.verify(rolled.token)).valid

    asyncio.run(main())


@pytest.mark.parametrize("call", ["edit", "roll"])
def test_edit_and_roll_are_never_resent(fake_tokend, call):
    seen = []
    f = fake_tokend(drop_second_call(seen))
    with tokend.Client(f.socket) as c:
        c.whoami()
        with pytest.raises(tokend.ConnectionClosed):
            if call == "edit":
                c.edit("once.example", "tok_00000000000000000000", label="x")
            else:
                c.roll("once.example", "tok_00000000000000000000")
        assert seen == ["who_am_i", call] and f.accepted == 1
