#!/usr/bin/python3
"""Verify throughput of the Python client on one connection.

    bench_verify.py -s SOCKET [-n REQUESTS] [--tokens N] [-P PIPELINE]
                    [--mode blocking|async|cached]

Issues --tokens tokens first (not measured), then sends -n Verifies of them
chosen at random: --mode blocking with Client, one call at a time; --mode
async with AsyncClient, -P calls in flight on its one connection (each
answered slot refilled at once, as tokend-bench --window); --mode cached
with Client(cache_size=--tokens), its Verify cache warmed by one Verify of
each token first (not measured), so that the run is all hits but for the
hits' reports to tokend (once per --last-used-granularity-ms per token).
Every answer is
checked (valid, the right token id); any mismatch exits 1. Prints one CSV
line: client,conns,pipeline,requests,rps,client_cpu_us (this process's CPU
time per Verify, user + system). Run by scripts/bench-python.sh
next to tokend-bench; point it at a throwaway tokend (the tokens stay).
"""

import argparse
import asyncio
import random
import sys
import time

import tokend


async def issue_tokens(path, n, domain):
    async with tokend.AsyncClient(path, timeout=60) as c:
        issued = await asyncio.gather(
            *(c.issue(domain, f"bench {i}") for i in range(n))
        )
    return [(i.token, i.info.id) for i in issued]


def run_blocking(path, picks, cache_size=None):
    bad = 0
    with tokend.Client(path, timeout=60, cache_size=cache_size) as c:
        c.whoami()  # connected before the clock starts
        if cache_size is not None:
            for token, _ in set(picks):
                c.verify(token)
            if c.cache_stats().generation == 0:
                print("bench_verify: tokend gave no cache region", file=sys.stderr)
                sys.exit(1)
        start, cpu = time.perf_counter(), time.process_time()
        for token, token_id in picks:
            r = c.verify(token)
            bad += not (r.valid and r.token_id == token_id)
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return elapsed, cpu, bad


async def run_async(path, picks, pipeline):
    bad = 0
    async with tokend.AsyncClient(path, timeout=60) as c:
        await c.whoami()
        it = iter(picks)

        async def slot():
            nonlocal bad
            for token, token_id in it:
                r = await c.verify(token)
                bad += not (r.valid and r.token_id == token_id)

        start, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(slot() for _ in range(pipeline)))
        elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu
    return elapsed, cpu, bad


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-s", "--socket", required=True)
    ap.add_argument("-n", "--requests", type=int, default=20000)
    ap.add_argument("--tokens", type=int, default=1000)
    ap.add_argument("-P", "--pipeline", type=int, default=1)
    ap.add_argument(
        "--mode", choices=("blocking", "async", "cached"), default="blocking"
    )
    ap.add_argument("--header", action="store_true", help="print the CSV header first")
    a = ap.parse_args()
    if a.mode != "async" and a.pipeline != 1:
        ap.error(f"--mode {a.mode} has one call in flight: -P 1")

    tokens = asyncio.run(
        issue_tokens(a.socket, a.tokens, f"pybench-{random.getrandbits(32):08x}")
    )
    rng = random.Random(1)
    picks = [tokens[rng.randrange(len(tokens))] for _ in range(a.requests)]
    if a.mode == "blocking":
        elapsed, cpu, bad = run_blocking(a.socket, picks)
    elif a.mode == "cached":
        elapsed, cpu, bad = run_blocking(a.socket, picks, a.tokens)
    else:
        elapsed, cpu, bad = asyncio.run(run_async(a.socket, picks, a.pipeline))
    if a.header:
        print("client,conns,pipeline,requests,rps,client_cpu_us")
    print(
        f"python-{a.mode},1,{a.pipeline},{a.requests},"
        f"{a.requests / elapsed:.0f},{cpu / a.requests * 1e6:.1f}"
    )
    if bad:
        print(f"bench_verify: {bad} answers were not the token's VALID", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
