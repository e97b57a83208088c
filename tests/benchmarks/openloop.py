"""Open-loop load: calls fired on a fixed schedule whatever is still outstanding, latency counted from
the scheduled time (a slow system cannot slow the load down and hide its own queueing), measured in
slices on a quiet machine."""

import asyncio
import contextlib
import logging
import math
import random
import statistics
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from contracts.client import RequestTimeout
from tests.benchmarks.machine import QUIET_CORES, CpuMeter, wait_quiet
from tests.benchmarks.stats import Json, Run

log = logging.getLogger("bench")

WARMUP_SECONDS = 1.0
"""Unmeasured calls before each slice."""
WARMUP_CHUNK_SECONDS = 5.0
TIMEOUT_SECONDS = 5.0

Call = Callable[[int], Awaitable[bool]]
"""One request for item ``i``: True when the answer is right, False when it is wrong."""


async def open_loop(call: Call, *, rate: float, seconds: float, items: int, seed: int) -> Run:
    """Fire ``rate * seconds`` calls on a fixed schedule, each as its own task, and wait for all."""
    rng = random.Random(seed)
    run = Run(rate=rate, seconds=seconds, sent=int(rate * seconds))
    failures_logged = 0

    async def one(i: int, scheduled: float) -> None:
        nonlocal failures_logged
        try:
            right = await call(i)
        except RequestTimeout:
            run.timeouts += 1
            return
        except Exception as exc:
            run.errors += 1
            if failures_logged < 5:
                failures_logged += 1
                log.warning("call failed: %r", exc)
            return
        if right:
            run.latencies_ms.append((time.perf_counter() - scheduled) * 1000)
        else:
            run.wrong += 1

    # perf_counter, not loop.time(): uvloop's clock ticks in whole milliseconds.
    tasks: list[asyncio.Task[None]] = []
    t0 = time.perf_counter() + 0.01
    for n in range(run.sent):
        scheduled = t0 + n / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        run.max_send_lag_ms = max(run.max_send_lag_ms, (time.perf_counter() - scheduled) * 1000)
        tasks.append(asyncio.create_task(one(rng.randrange(items), scheduled)))
    await asyncio.gather(*tasks)
    run.elapsed = time.perf_counter() - t0
    return run


@dataclass
class Slice:
    """One measured slice: its run and the cores kept busy meanwhile."""

    run: Run
    cpu: Json


@dataclass(frozen=True)
class Pace:
    """What every slice of one point shares: rate, length, items called, how long to wait for quiet,
    and the other processes whose CPU counts (role -> pid)."""

    rate: float
    seconds: float
    items: int
    quiet_wait: float
    pids: dict[str, int]


async def measure(name: str, call: Call, pace: Pace, *, seed: int) -> Slice:
    """One slice of ``call`` at ``pace``, after waiting for quiet and ~1 s of unmeasured warm-up."""
    background, busiest = await wait_quiet(pace.quiet_wait)
    if background is not None and background > QUIET_CORES:
        log.warning("  %s: the machine is busy with other work (%.2f cores: %s)", name, background, busiest)
    await open_loop(call, rate=pace.rate, seconds=WARMUP_SECONDS, items=pace.items, seed=-1)
    meter = CpuMeter(pace.pids).start()
    run = await open_loop(call, rate=pace.rate, seconds=pace.seconds, items=pace.items, seed=seed)
    cpu: Json = meter.stop() | {"machine_busy_cores_idle_before": background, "busiest_idle_before": busiest}
    summary = run.summary()
    log.info(
        "  %-10s rate=%-6g count=%-6d errors=%-4d p50=%.2fms p99=%.2fms mean=%.2fms max lag=%.1fms cpu=%s",
        name,
        pace.rate,
        summary["count"],
        summary["errors"],
        summary["p50_ms"] or math.nan,
        summary["p99_ms"] or math.nan,
        summary["mean_ms"] or math.nan,
        summary["max_send_lag_ms"],
        {k: v for k, v in cpu.items() if k != "busiest_idle_before"},
    )
    return Slice(run, cpu)


def pooled(slices: Sequence[Slice]) -> Json:
    """A point's summary over the calls of all its slices, mean cores, and each slice's own figures."""
    cpu: Json = {}
    for key in slices[0].cpu:
        if key == "busiest_idle_before":
            continue
        numbers = [v for v in (s.cpu.get(key) for s in slices) if isinstance(v, int | float)]
        if key == "machine_busy_cores_idle_before":
            cpu[key] = max(numbers, default=None)  # the worst slice decides whether it was quiet
        else:
            cpu[key] = round(statistics.fmean(numbers), 2) if numbers else None
    cpu["busiest_idle_before"] = max(
        slices, key=lambda s: s.cpu["machine_busy_cores_idle_before"] or 0.0
    ).cpu["busiest_idle_before"]
    summary = Run.pooled([s.run for s in slices]).summary()
    return summary | {"cpu": cpu, "slices": [s.run.brief() for s in slices]}


async def warm_up(calls: dict[str, Call], *, rate: float, seconds: float, items: int) -> list[Json]:
    """Each of ``calls`` in turn, ``WARMUP_CHUNK_SECONDS`` at a time, for ``seconds``; unmeasured, so
    that a freshly started broker's compiling falls on no slice. Each chunk's p50/p99, for the JSON."""
    chunks: list[Json] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline:
        for name, call in calls.items():
            run = await open_loop(call, rate=rate, seconds=WARMUP_CHUNK_SECONDS, items=items, seed=-2)
            chunk = {"name": name} | run.brief()
            chunks.append(chunk)
            log.info(
                "  warm-up %-6s rate=%-6g p50=%sms p99=%sms", name, rate, chunk["p50_ms"], chunk["p99_ms"]
            )
    return chunks


@contextlib.asynccontextmanager
async def bounded() -> AsyncIterator[None]:
    """The client's timeout, for calls that have none of their own: late counts as a timeout."""
    try:
        async with asyncio.timeout(TIMEOUT_SECONDS):
            yield
    except TimeoutError as exc:
        raise RequestTimeout(f"no answer within {TIMEOUT_SECONDS}s") from exc


async def until_answered(name: str, call: Callable[[], Awaitable[Any]], *, attempts: int = 30) -> Any:
    """The first answer to ``call``; the consumers may still be joining their groups at first."""
    for attempt in range(attempts):
        try:
            return await call()
        except RequestTimeout:
            log.info("  %s: no answer yet (attempt %d)", name, attempt + 1)
    raise RuntimeError(f"{name}: never answered")
