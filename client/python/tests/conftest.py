"""Fixtures: a real tokend from the build tree on a temporary socket and
database, and a fake tokend (a Unix socket server driven by the test) for
what a real one will not do on demand (answer out of order, stay silent).

TOKEND_BIN names the tokend binary (ctest sets it); without it, build/tokend
of the repository. TOKEND_VECTORS names tests/vectors/vectors.json."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import tempfile
import threading
import time

import pytest

from tokend._proto import tokend_pb2 as pb

REPO = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
TOKEND_BIN = os.environ.get("TOKEND_BIN") or os.path.join(REPO, "build", "tokend")
VECTORS = os.environ.get("TOKEND_VECTORS") or os.path.join(
    REPO, "tests", "vectors", "vectors.json"
)
START_TIMEOUT_S = 30
STOP_TIMEOUT_S = 30


def wait_for(cond, timeout_s, what):
    """Polls cond() until it is true; fails the test past timeout_s."""
    deadline = time.monotonic() + timeout_s
    while not cond():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.01)


class Tokend:
    """A tokend process on a fresh database in its own temporary folder."""

    def __init__(self, extra_args=()):
        # Unix socket paths are short (108 bytes): a short folder in /tmp.
        self.dir = tempfile.mkdtemp(prefix="tokend-py-", dir="/tmp")
        self.socket = os.path.join(self.dir, "tokend.sock")
        self.log_path = os.path.join(self.dir, "tokend.log")
        args = [
            TOKEND_BIN,
            "--socket", self.socket,
            "--db", os.path.join(self.dir, "tokend.db"),
            "--pepper-file", os.path.join(self.dir, "pepper"),
            "--create-db",
            *extra_args,
        ]
        self.db = os.path.join(self.dir, "tokend.db")
        self._args = args
        self._log = open(self.log_path, "wb")
        self._spawn()

    def _spawn(self):
        self.proc = subprocess.Popen(
            self._args, stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log
        )
        wait_for(self._accepts, START_TIMEOUT_S, f"tokend on {self.socket}")

    def terminate(self):
        """SIGTERM and wait (the database stays): tokend must exit 0."""
        self.proc.send_signal(signal.SIGTERM)
        rc = self.proc.wait(STOP_TIMEOUT_S)
        if rc != 0:
            pytest.fail(f"tokend exited with {rc}:\n{self.log()}")

    def kill(self):
        """SIGKILL and wait: no chance to clean up."""
        self.proc.kill()
        self.proc.wait(STOP_TIMEOUT_S)

    def start_again(self):
        """A new tokend process on the same socket, database and pepper,
        after terminate() or kill()."""
        if os.path.exists(self.socket):
            os.unlink(self.socket)  # a killed tokend leaves it behind
        self._spawn()

    def _accepts(self):
        if self.proc.poll() is not None:
            pytest.fail(f"tokend exited with {self.proc.returncode}:\n{self.log()}")
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(self.socket)
            return True
        except OSError:
            return False
        finally:
            s.close()

    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        """SIGTERM; tokend must exit 0."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                pytest.fail("tokend ignored SIGTERM")
        self._log.close()
        rc = self.proc.returncode
        # SIGKILLed by its test: nothing to check.
        if rc != 0 and rc != -signal.SIGKILL:
            pytest.fail(f"tokend exited with {rc}:\n{self.log()}")
        subprocess.run(["rm", "-rf", self.dir], check=False)


@pytest.fixture
def tokend_factory():
    """Starts tokends with extra arguments; stops each at the test's end."""
    started = []

    def start(*extra_args):
        t = Tokend(extra_args)
        started.append(t)
        return t

    yield start
    for t in started:
        t.stop()


@pytest.fixture(scope="module")
def server():
    """One tokend for a test module; tests use their own domains."""
    t = Tokend()
    yield t
    t.stop()


class FakeTokend:
    """A Unix socket server that hands each accepted connection to
    ``handler(conn)`` in a thread: the test plays tokend's part."""

    def __init__(self, handler):
        self.dir = tempfile.mkdtemp(prefix="tokend-fake-", dir="/tmp")
        self.socket = os.path.join(self.dir, "fake.sock")
        self._srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._srv.bind(self.socket)
        self._srv.listen(8)
        self.accepted = 0
        self._handler = handler
        self._threads = []
        self._conns = []
        self._thread = threading.Thread(target=self._accept_loop, daemon=True)
        self._thread.start()

    def _accept_loop(self):
        while True:
            try:
                conn, _ = self._srv.accept()
            except OSError:
                return
            self.accepted += 1
            self._conns.append(conn)
            t = threading.Thread(target=self._handler, args=(conn,), daemon=True)
            t.start()
            self._threads.append(t)

    def close(self):
        # Wake the accept() first and wait for its thread: a thread still
        # in accept() on a closed socket's descriptor number could take the
        # next test's connection when that number is reused.
        try:
            self._srv.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._thread.join(5)
        self._srv.close()
        for c in self._conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            c.close()
        for t in self._threads:
            t.join(5)
        subprocess.run(["rm", "-rf", self.dir], check=False)


@pytest.fixture
def fake_tokend():
    fakes = []

    def start(handler):
        f = FakeTokend(handler)
        fakes.append(f)
        return f

    yield start
    for f in fakes:
        f.close()


def read_frame(conn):
    """One whole frame's body from a socket, or None at EOF."""
    head = recv_exact(conn, 5)
    if head is None:
        return None
    n = int.from_bytes(head[1:5], "big")
    return recv_exact(conn, n)


def recv_exact(conn, n):
    buf = b""
    while len(buf) < n:
        try:
            chunk = conn.recv(n - len(buf))
        except OSError:
            return None
        if not chunk:
            return None
        buf += chunk
    return buf


def frame(body: bytes) -> bytes:
    return b"\x00" + len(body).to_bytes(4, "big") + body


def drop_second_call(issued):
    """A fake tokend whose first connection answers a WhoAmI, then closes
    on the call after it without answering; later connections answer. Each
    request's method is appended to issued."""

    def handler(conn):
        n = 0
        while True:
            body = read_frame(conn)
            if body is None:
                return
            req = pb.Request.FromString(body)
            issued.append(req.WhichOneof("method"))
            n += 1
            if n == 2 and len(issued) == 2:
                conn.close()
                return
            resp = pb.Response(call_id=req.call_id)
            resp.status.SetInParent()
            getattr(resp, req.WhichOneof("method")).SetInParent()
            conn.sendall(frame(resp.SerializeToString()))

    return handler
