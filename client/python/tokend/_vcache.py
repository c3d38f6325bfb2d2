"""The blocking client's Verify cache (issue 15, section 2), the same rules
as the C library's (client/lib/client.c and vcache.c; docs/PROTOCOL.md,
"GetCacheRegion").

tokend hands a caching client its revocation epoch region: a sealed memfd
of one page, sent with SCM_RIGHTS on the GetCacheRegion answer, mapped here
read-only (layout: common/epoch_region.h). tokend bumps the page's epoch
before it answers any change that takes validity away, and refreshes its
heartbeat while it is current. A valid Verify answer is kept, under the
epoch read *before* its request was sent, and answers a later Verify of the
same token only while:

- the epoch is still that one (an epoch move empties the table),
- the answer's ``expires_at`` has not passed by this process's clock,
- the heartbeat is younger than the region's bound (CLOCK_MONOTONIC, the
  clock tokend writes it with), and the connection to tokend is still open
  (looked at once per millisecond: a killed tokend cannot zero its
  heartbeat, but its socket closes at once).

Tokens are never stored: the key is a keyed BLAKE2b-128 of the token under
a random key made per process. No region (an old tokend, not a verifier,
the descriptor lost): nothing is cached, every Verify goes to tokend; never
a weaker guarantee. A new connection (a reconnect: maybe a restarted tokend
with a new region) drops the region and every answer, and asks again.

Hits are reported back so that tokend's counters and last_used_at stay
true: once a token's answer has hits not yet reported and the region's
last_used_granularity_ms has passed since it was stored or last reported,
its next Verify goes to tokend carrying them (VerifyRequest.cached_hits).

Not thread-safe by itself: the Client calls it under its lock.
"""

from __future__ import annotations

import collections
import fcntl
import hashlib
import mmap
import os
import stat
import struct
import time
from dataclasses import dataclass
from typing import Optional

# common/epoch_region.h
REGION_MAGIC = 0x31454843444B4F54  # "TOKDCHE1"
REGION_VERSION = 1
REGION_BYTES = 4096
_HEADER = struct.Struct("=QIIQQQ")  # magic, version, size, generation,
#                                     heartbeat_bound_ms, last_used_granularity_ms
_EPOCH_WORD = 64 // 8  # u64 at offset 64
_HEARTBEAT_WORD = 128 // 8  # i64 at offset 128

_KEY_BYTES = 32
_DIGEST_BYTES = 16

# One key per process: a token's digest means nothing outside it.
_PROCESS_KEY = os.urandom(_KEY_BYTES)


@dataclass(frozen=True)
class CacheStats:
    """What the cache did (tokend_cache_stats_t's fields)."""

    hits: int  # Verifies answered from the cache
    misses: int  # Verifies asked of tokend while a region was held
    flushes: int  # epoch moves seen (each emptied the table)
    stale: int  # Verifies asked of tokend: heartbeat too old or connection gone
    reported: int  # cached hits reported back to tokend
    entries: int  # answers held now
    capacity: int  # the most it holds (cache_size)
    generation: int  # the region's (0: none mapped)
    fresh: bool  # a region is mapped and its heartbeat is young enough


def _mono_ms() -> int:
    return time.monotonic_ns() // 1_000_000


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


class Region:
    """tokend's epoch page, mapped read-only."""

    def __init__(self, fd: int, generation: int) -> None:
        """Maps fd (not taken: the caller closes it). Raises ValueError if
        it is not a sealed memfd of one page holding a region of that
        generation."""
        seals = fcntl.fcntl(fd, fcntl.F_GET_SEALS)
        st = os.fstat(fd)
        # Sealed against shrinking: the mapping can never fault.
        if (
            not seals & fcntl.F_SEAL_SHRINK
            or not stat.S_ISREG(st.st_mode)
            or st.st_size < REGION_BYTES
        ):
            raise ValueError(
                f"tokend's region is not a sealed memfd of {REGION_BYTES} bytes"
            )
        self._map = mmap.mmap(fd, REGION_BYTES, mmap.MAP_SHARED, mmap.PROT_READ)
        try:
            magic, version, size, gen, bound, gran = _HEADER.unpack_from(self._map, 0)
            if (
                magic != REGION_MAGIC
                or version != REGION_VERSION
                or size != REGION_BYTES
                or gen != generation
            ):
                raise ValueError("tokend's region is not one this client reads")
        except BaseException:
            self._map.close()
            raise
        self.generation = gen
        self.heartbeat_bound_ms = bound
        self.last_used_granularity_ms = gran
        # Aligned 8-byte words read whole (memoryview indexing copies the
        # item with one native load), as the C library's atomic loads.
        self._u64 = memoryview(self._map).cast("Q")
        self._i64 = memoryview(self._map).cast("q")

    def epoch(self) -> int:
        return self._u64[_EPOCH_WORD]

    def fresh(self, mono_ms: int) -> bool:
        """The heartbeat is younger than the bound (0 once tokend began
        to shut down)."""
        return mono_ms - self._i64[_HEARTBEAT_WORD] < self.heartbeat_bound_ms

    def close(self) -> None:
        self._u64.release()
        self._i64.release()
        self._map.close()


class _Entry:
    __slots__ = ("epoch", "expires_at", "result", "reported_at", "unreported")

    def __init__(self, epoch, expires_at, result, reported_at):
        self.epoch = epoch
        self.expires_at = expires_at
        self.result = result
        self.reported_at = reported_at
        self.unreported = 0


class Ask:
    """What a Verify the cache did not answer takes to tokend and back."""

    __slots__ = ("cacheable", "epoch", "seq", "report")

    def __init__(self) -> None:
        self.cacheable = False  # its answer may be stored,
        self.epoch = 0  # under this epoch (read before the request is sent),
        self.seq = 0  # while the region of that number is still held
        self.report = 0  # cached hits of this token to report


class VerifyCache:
    """A bounded table of valid Verify answers and tokend's region."""

    def __init__(self, max_entries: int) -> None:
        if not isinstance(max_entries, int) or max_entries < 1:
            raise ValueError("cache_size must be a whole number >= 1")
        self.max_entries = max_entries
        # Oldest stored first: at the bound the oldest is replaced.
        self._table: "collections.OrderedDict[bytes, _Entry]" = (
            collections.OrderedDict()
        )
        self.region: Optional[Region] = None
        self.region_wanted = True  # ask for it on this connection (once)
        self.region_seq = 0  # counts regions mapped and dropped
        self._epoch = 0  # the epoch the table was last seen under
        self.conn_checked_ms = -1
        self.hits = self.misses = self.flushes = self.stale = self.reported = 0

    @staticmethod
    def key(token: str) -> bytes:
        return hashlib.blake2b(
            token.encode(), digest_size=_DIGEST_BYTES, key=_PROCESS_KEY
        ).digest()

    # ---- the region ----

    def attach(self, fd: int, generation: int) -> None:
        """Maps the region tokend sent (fd not taken). Raises ValueError
        (nothing changed) if it is not one."""
        region = Region(fd, generation)
        self.drop_region()
        self.region = region
        self.region_wanted = False
        self._epoch = 0

    def drop_region(self) -> None:
        """Unmaps the region and empties the table (its answers were stored
        under that region's epochs); the next Verify asks for a region."""
        if self.region is not None:
            self.region.close()
            self.region = None
            self.region_seq += 1
        self._table.clear()
        self.region_wanted = True

    # ---- lookups ----

    def lookup(self, token: str, mono_ms: int, ask: Ask):
        """The cached answer for token, or None with ask filled for asking
        tokend. The caller has checked the region is held, fresh and its
        connection open."""
        rg = self.region
        e = rg.epoch()
        if e != self._epoch:
            if self._epoch != 0:
                self.flushes += 1
            # Answers of another epoch are never returned: drop them all.
            self._table.clear()
            self._epoch = e
        k = self.key(token)
        ent = self._table.get(k)
        if (
            ent is not None
            and ent.epoch == e
            and (ent.expires_at == 0 or _wall_ms() < ent.expires_at)
        ):
            if (
                ent.unreported > 0
                and mono_ms - ent.reported_at >= rg.last_used_granularity_ms
            ):
                ask.report = ent.unreported
                ent.unreported = 0
                ent.reported_at = mono_ms
                self.reported += ask.report
            else:
                ent.unreported += 1
                self.hits += 1
                return ent.result
        else:
            self.misses += 1
        ask.epoch = e
        ask.seq = self.region_seq
        ask.cacheable = True
        return None

    def put(self, token: str, ask: Ask, mono_ms: int, result) -> None:
        """Holds a valid answer under the epoch read before it was asked,
        if the region it was read from is still held. Anything else is
        ignored. Hits not yet reported of an answer replaced are lost (at
        most last_used_granularity_ms worth per token), as in the C
        library."""
        if (
            not ask.cacheable
            or ask.seq != self.region_seq
            or ask.epoch != self._epoch
            or not result.valid
            or result.reason != "VALID"
        ):
            return
        k = self.key(token)
        if k in self._table:
            del self._table[k]
        elif len(self._table) >= self.max_entries:
            self._table.popitem(last=False)
        self._table[k] = _Entry(ask.epoch, result.expires_at, result, mono_ms)

    def stats(self) -> CacheStats:
        rg = self.region
        return CacheStats(
            hits=self.hits,
            misses=self.misses,
            flushes=self.flushes,
            stale=self.stale,
            reported=self.reported,
            entries=len(self._table),
            capacity=self.max_entries,
            generation=rg.generation if rg is not None else 0,
            fresh=rg is not None and rg.fresh(_mono_ms()),
        )

    def close(self) -> None:
        self.drop_region()
