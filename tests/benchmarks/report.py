"""The JSON report: what it ran on, and the one document printed to stdout (progress goes to stderr)."""

import asyncio
import contextlib
import importlib.metadata
import json
import logging
import os
import platform
import sys
from collections.abc import Coroutine
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from pymongo import AsyncMongoClient

from tests.benchmarks.machine import CpuMeter
from tests.benchmarks.process import BATCH, KAFKA, MONGODB, Loop, run_on
from tests.benchmarks.stats import Json


def without_credentials(url: str) -> str:
    parts = urlsplit(url)
    if parts.username is None:
        return url
    host = parts.hostname or ""
    netloc = f"***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit(parts._replace(netloc=netloc))


async def environment(note: str) -> Json:
    """Machine, platform, package and store versions, and how busy the machine was before the run."""
    mongo: AsyncMongoClient[Json] = AsyncMongoClient(MONGODB, serverSelectionTimeoutMS=5000)
    try:
        info = await mongo.admin.command("buildInfo")
    finally:
        await mongo.close()
    meter = CpuMeter().start()
    await asyncio.sleep(2)
    background = meter.stop()["machine_busy_cores"]
    versions = {}
    for package in ("aiokafka", "faststream", "pymongo", "pydantic"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            versions[package] = importlib.metadata.version(package)
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "event_loop": os.environ.get("EVENT_LOOP"),
        "packages": versions,
        "kafka_bootstrap_servers": KAFKA,
        "mongodb_url": without_credentials(MONGODB),
        "store_version": info.get("version"),
        "store_ferretdb_version": info.get("ferretdbVersion"),
        "machine_busy_cores_before_run": background,
        "note": note,
    }


def brief_environment(loop: Loop) -> Json:
    """The short form bench_sync reports."""
    return {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "kafka": KAFKA,
        "store": without_credentials(MONGODB),
        "batch_size": BATCH,
        "event_loop": loop,
    }


def run(main: Coroutine[Any, Any, Json], *, loop: Loop | None = None) -> None:
    """Run a benchmark's ``main`` and print its report as one JSON document on stdout."""
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    out = sys.stdout
    # Anything else printed meanwhile goes to stderr, so stdout holds the JSON alone.
    with contextlib.redirect_stdout(sys.stderr):
        report = run_on(loop, main)
    json.dump(report, out, indent=2)
    out.write("\n")
