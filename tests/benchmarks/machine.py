"""Cores kept busy, by the whole machine and by single processes (Linux ``/proc``), and waiting for
the machine to go quiet: on a small shared machine other work skews every latency."""

import asyncio
import contextlib
import os
import time
from dataclasses import dataclass

QUIET_CORES = 0.3
"""Idle machine load (cores) above which a point is flagged: someone else is using the machine."""


def machine_cpu_seconds() -> tuple[float, float] | None:
    """(busy, total) CPU seconds of the whole machine since boot (Linux), or None elsewhere."""
    try:
        with open("/proc/stat") as stat:
            values = [int(v) for v in stat.readline().split()[1:]]
    except OSError:
        return None
    ticks = os.sysconf("SC_CLK_TCK")
    idle = values[3] + values[4]  # idle + iowait
    return (sum(values) - idle) / ticks, sum(values) / ticks


def process_cpu_seconds() -> dict[int, tuple[str, float]]:
    """pid -> (command name, CPU seconds so far) for every process we may read (Linux)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    table: dict[int, tuple[str, float]] = {}
    with contextlib.suppress(OSError):
        for entry in os.scandir("/proc"):
            if not entry.name.isdigit():
                continue
            with contextlib.suppress(OSError, ValueError, IndexError), open(f"/proc/{entry.name}/stat") as f:
                head, _, tail = f.read().rpartition(")")
                fields = tail.split()
                table[int(entry.name)] = (head.partition("(")[2], (int(fields[11]) + int(fields[12])) / ticks)
    return table


@dataclass
class CpuMeter:
    """Cores kept busy between start() and stop(): by the whole machine, by this process and by the
    processes named in ``pids`` (role -> pid)."""

    pids: dict[str, int] | None = None
    wall: float = 0.0
    process: float = 0.0
    machine: tuple[float, float] | None = None
    others: dict[int, tuple[str, float]] | None = None

    def start(self) -> "CpuMeter":
        self.wall, self.process = time.perf_counter(), time.process_time()
        self.machine = machine_cpu_seconds()
        self.others = process_cpu_seconds() if self.pids else None
        return self

    def stop(self) -> dict[str, float | None]:
        wall = time.perf_counter() - self.wall
        now, after = machine_cpu_seconds(), process_cpu_seconds() if self.pids else {}
        machine = None if now is None or self.machine is None else (now[0] - self.machine[0]) / wall
        before = self.others or {}
        return {
            "machine_busy_cores": None if machine is None else round(machine, 2),
            "this_process_cores": round((time.process_time() - self.process) / wall, 2),
        } | {
            f"{role}_process_cores": round((after[pid][1] - before[pid][1]) / wall, 2)
            for role, pid in (self.pids or {}).items()
            if pid in before and pid in after
        }


async def idle_load(seconds: float) -> tuple[float | None, list[str]]:
    """Cores the machine keeps busy while this process does nothing (other people's work), and the
    processes keeping them busy."""
    before, meter = process_cpu_seconds(), CpuMeter().start()
    await asyncio.sleep(seconds)
    busy, after = meter.stop()["machine_busy_cores"], process_cpu_seconds()
    used = {
        pid: (name, (spent - before.get(pid, (name, 0.0))[1]) / seconds)
        for pid, (name, spent) in after.items()
    }
    top = sorted(used.items(), key=lambda item: -item[1][1])[:3]
    return busy, [f"{name}[{pid}]={cores:.2f}" for pid, (name, cores) in top if cores >= 0.05]


async def wait_quiet(limit: float) -> tuple[float | None, list[str]]:
    """Wait (up to ``limit`` seconds) until the machine is quiet; the last idle load seen."""
    deadline = time.monotonic() + limit
    while True:
        busy, top = await idle_load(1.0)
        if busy is None or busy <= QUIET_CORES or time.monotonic() >= deadline:
            return busy, top
