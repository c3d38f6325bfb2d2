"""The blocking Client against a real tokend (and a fake one for what a
real tokend will not do on demand)."""

from __future__ import annotations

import select
import threading
import time

import pytest

import tokend
from tokend import errors
from tokend._proto import tokend_pb2 as pb

from conftest import drop_second_call, frame, read_frame, wait_for


def test_whoami_as_operator(server):
    with tokend.Client(server.socket) as c:
        me = c.whoami()
    assert isinstance(me, tokend.WhoAmI)
    assert me.operator and me.verifier
    assert me.user.startswith("uid:")


def test_server_status(server):
    with tokend.Client(server.socket) as c:
        before = c.server_status()
        issued = c.issue("status.example", "s")
        after = c.server_status()
    assert isinstance(before, tokend.ServerStatus)
    assert before.store == "sqlite" and before.host_id == ""
    assert before.fresh and before.problem == ""
    assert after.tokens == before.tokens + 1
    assert len(after.index_digest) == 64
    assert after.index_digest != before.index_digest
    # SQLite serves one host: no propagation to report.
    assert issued.propagation is None


def test_socket_from_environment(server, monkeypatch):
    monkeypatch.setenv("TOKEND_SOCKET", server.socket)
    with tokend.Client() as c:
        assert c.socket_path == server.socket
        assert c.whoami().operator


def test_issue_verify_revoke(server):
    with tokend.Client(server.socket) as c:
        issued = c.issue("life.example", "CI deploy", ["read", "write:x"])
        assert issued.token.startswith("tkd_")
        assert issued.token not in repr(issued)
        info = issued.info
        assert info.domain == "life.example" and info.label == "CI deploy"
        assert info.scopes == ("read", "write:x") and info.status == "ACTIVE"

        v = c.verify(issued.token)
        assert v == tokend.VerifyResult(
            valid=True,
            reason="VALID",
            token_id=info.id,
            domain="life.example",
            label="CI deploy",
            scopes=("read", "write:x"),
            expires_at=0,
        )

        r = c.revoke("life.example", info.id)
        assert r.revoked_at > 0 and not r.already_revoked
        again = c.revoke("life.example", info.id)
        assert again.already_revoked and again.revoked_at == r.revoked_at

        v = c.verify(issued.token)
        assert not v.valid and v.reason == "REVOKED" and v.token_id == info.id


def test_one_client_shared_by_threads(server):
    with tokend.Client(server.socket) as c:
        issued = c.issue("threads.example", "shared")
        results = []

        def work():
            for _ in range(50):
                results.append(c.verify(issued.token).token_id)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert results == [issued.info.id] * 200


def test_verify_invalid_tokens_are_results(server):
    with tokend.Client(server.socket) as c:
        assert c.verify("tkd_nope").reason == "MALFORMED"
        assert c.verify("").reason == "MALFORMED"
        # Well formed (the checksum holds), never issued: from the vectors.
        unknown = "tkd_lzkvnMKgkdidB8xZ39NfIXapOdnWCCfe2EDZJP"
        v = c.verify(unknown)
        assert (v.valid, v.reason, v.token_id) == (False, "UNKNOWN", "")


def test_expired_token(server):
    with tokend.Client(server.socket) as c:
        expires_at = int(time.time() * 1000) + 300
        issued = c.issue("exp.example", "short", expires_at=expires_at)
        assert c.verify(issued.token).expires_at == expires_at
        wait_for(lambda: time.time() * 1000 > expires_at, 30, "the expiry")
        v = c.verify(issued.token)
        assert (v.valid, v.reason, v.token_id) == (False, "EXPIRED", issued.info.id)
        (listed,) = list(c.list("exp.example"))
        assert listed.status == "EXPIRED"


def test_list_iterates_over_pages(server):
    with tokend.Client(server.socket) as c:
        ids = [c.issue("pages.example", f"t{i}").info.id for i in range(7)]
        page = c.list_page("pages.example", page_size=3)
        assert len(page.tokens) <= 3 and page.next_page_token
        listed = [t.id for t in c.list("pages.example", page_size=3)]
        assert listed == list(reversed(ids))  # newest first, each once
        c.revoke("pages.example", ids[0])
        assert len(list(c.list("pages.example", page_size=2))) == 6
        assert len(list(c.list("pages.example", 2, include_revoked=True))) == 7


def test_errors_carry_code_and_message(server):
    with tokend.Client(server.socket) as c:
        with pytest.raises(tokend.NotFound) as e:
            c.revoke("err.example", "tok_AAAAAAAAAAAAAAAAAAAA")
        assert e.value.code == 5 and e.value.code_name == "NOT_FOUND"
        assert e.value.message == "no token with this id in this domain"
        assert isinstance(e.value, tokend.TokendError)

        with pytest.raises(tokend.InvalidArgument) as e:
            c.issue("bad domain", "x")
        assert e.value.code == 3
        assert "domain" in e.value.message
        assert str(e.value).startswith("INVALID_ARGUMENT: ")

        with pytest.raises(tokend.InvalidArgument):
            c.list_page("err.example", page_token="not-one-of-ours")
        # The connection is still good after refusals.
        assert c.whoami().operator


def test_error_for_unknown_code():
    e = errors.error_for(42, "new")
    assert type(e) is tokend.TokendError and e.code == 42
    assert type(errors.error_for(14, "x")) is tokend.Unavailable


def test_domain_admins(server):
    with tokend.Client(server.socket) as c:
        g = c.grant_domain_admin("adm.example", "alice@example.com")
        assert g.granted_at > 0 and not g.already_admin
        assert c.grant_domain_admin("adm.example", "alice@example.com").already_admin
        (a,) = c.list_domain_admins("adm.example")
        assert a.user == "alice@example.com" and a.granted_at == g.granted_at

        # alice acts in her domain through the operator (actor), and
        # her tokens go with her.
        c.issue("adm.example", "alice's", actor="alice@example.com")
        c.issue("adm.example", "root's")
        with pytest.raises(tokend.PermissionDenied):
            c.issue("other.example", "x", actor="alice@example.com")
        assert c.revoke_domain_admin("adm.example", "alice@example.com", True) == 1
        assert c.list_domain_admins("adm.example") == ()
        with pytest.raises(tokend.NotFound):
            c.revoke_domain_admin("adm.example", "alice@example.com")
        active = [t.label for t in c.list("adm.example")]
        assert active == ["root's"]


def test_client_actor_applies_to_every_call(server):
    with tokend.Client(server.socket, actor="bob@example.com") as c:
        assert c.whoami().user == "bob@example.com"
        with pytest.raises(tokend.PermissionDenied):
            c.issue("bob.example", "x")


def test_audit_list_and_verify(server):
    with tokend.Client(server.socket) as c:
        issued = c.issue("audit.example", "audited")
        c.revoke("audit.example", issued.info.id)
        events = list(c.list_audit_events("audit.example", page_size=1))
        methods = [e.method for e in events]
        assert methods[:2] == ["Revoke", "Issue"]
        assert all(e.domain == "audit.example" and e.code == 0 for e in events)
        assert events[0].token_id == issued.info.id and events[0].break_glass

        check = c.verify_audit_log()
        assert check.ok and check.rows_checked >= 2
        assert len(check.head_hash) == 64
        anchored = c.verify_audit_log(check.head_id, check.head_hash)
        assert anchored.ok
        with pytest.raises(tokend.InvalidArgument):
            c.verify_audit_log(1, "not-a-hash")


def _wait_closed_by_peer(c):
    """Waits until tokend has closed the client's idle connection (EOF is
    readable on it)."""

    def closed():
        r, _, _ = select.select([c._sock], [], [], 0.05)
        return bool(r)

    wait_for(closed, 30, "tokend to close the idle connection")


def test_idempotent_call_reconnects(tokend_factory):
    t = tokend_factory("--idle-timeout-ms", "100")
    with tokend.Client(t.socket) as c:
        issued = c.issue("idle.example", "x")
        _wait_closed_by_peer(c)
        assert c.verify(issued.token).valid
        _wait_closed_by_peer(c)
        assert len(list(c.list("idle.example"))) == 1


def test_write_after_idle_close_goes_on_a_new_connection(tokend_factory):
    t = tokend_factory("--idle-timeout-ms", "100")
    with tokend.Client(t.socket) as c:
        c.issue("once.example", "first")
        _wait_closed_by_peer(c)
        c.issue("once.example", "second")
        assert [x.label for x in c.list("once.example")] == ["second", "first"]


def test_issue_is_never_resent(fake_tokend):
    seen = []
    f = fake_tokend(drop_second_call(seen))
    with tokend.Client(f.socket) as c:
        c.whoami()
        with pytest.raises(tokend.ConnectionClosed):
            c.issue("once.example", "lost")
        # Not sent again behind the caller's back.
        assert seen == ["who_am_i", "issue"] and f.accepted == 1
        c.whoami()  # the next call reconnects
    assert f.accepted == 2


def test_verify_is_resent_once(fake_tokend):
    seen = []
    f = fake_tokend(drop_second_call(seen))
    with tokend.Client(f.socket) as c:
        c.whoami()
        assert c.verify("tkd_x").reason == "UNSPECIFIED"
    assert seen == ["who_am_i", "verify", "verify"] and f.accepted == 2


def test_connection_level_error_raises_it(tokend_factory):
    t = tokend_factory(
        "--max-connections", "1", "--reserved-operator-connections", "0"
    )
    first = tokend.Client(t.socket)

    def first_connected():
        # The fixture's own probe may hold the one slot for a moment.
        try:
            return first.whoami().operator
        except tokend.ResourceExhausted:
            return False

    wait_for(first_connected, 30, "the one connection slot")
    with first, tokend.Client(t.socket) as second:
        with pytest.raises(tokend.ResourceExhausted) as e:
            second.whoami()
        assert "connection closed by tokend" in e.value.message
        assert "too many connections" in e.value.message
        assert first.whoami().operator


def test_cannot_connect():
    with pytest.raises(tokend.ConnectionClosed):
        tokend.Client("/nonexistent/tokend.sock").whoami()


def test_timeout_then_late_answer_is_skipped(fake_tokend):
    release = threading.Event()

    def handler(conn):
        # Answers the first call only after the second arrives, so the
        # first times out and its answer comes late, ahead of the second's.
        bodies = []
        while True:
            body = read_frame(conn)
            if body is None:
                return
            req = pb.Request.FromString(body)
            bodies.append(req)
            if len(bodies) == 1:
                continue
            release.set()
            for r in bodies:
                resp = pb.Response(call_id=r.call_id)
                resp.status.SetInParent()
                resp.who_am_i.user = f"call {r.call_id}"
                conn.sendall(frame(resp.SerializeToString()))
            bodies = []

    f = fake_tokend(handler)
    with tokend.Client(f.socket, timeout=0.2) as c:
        with pytest.raises(tokend.Timeout) as e:
            c.whoami()
        assert e.value.code == 4
        c.timeout = 30
        assert c.whoami().user == "call 2"
    assert release.is_set() and f.accepted == 1


def test_answer_frame_too_large_is_a_protocol_error(fake_tokend):
    def handler(conn):
        read_frame(conn)
        # Announces 64 MiB + 1: refused before anything is read.
        conn.sendall(b"\x00" + (64 * 1024 * 1024 + 1).to_bytes(4, "big"))

    f = fake_tokend(handler)
    with tokend.Client(f.socket) as c:
        with pytest.raises(tokend.ProtocolError):
            c.whoami()
        assert c._sock is None
