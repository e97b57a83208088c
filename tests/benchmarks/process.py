"""The real service as a process of its own (the ``contact-service`` console script, as in
production), on its own topic prefix and database, and the event loop everything runs on."""

import argparse
import asyncio
import json
import os
import signal
import socket
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, Literal, TypeVar

import uvloop
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import delete_topics

KAFKA = os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092")
MONGODB = os.environ.get("MONGODB_URL", "mongodb://127.0.0.1:27017/")
BATCH = int(os.environ.get("SYNC_BATCH_SIZE", "500"))

T = TypeVar("T")
Loop = Literal["asyncio", "uvloop"]


def add_loop_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--loop",
        choices=["asyncio", "uvloop"],
        default="asyncio",
        help="event loop of the service, the baselines and this driver alike (default: asyncio)",
    )


def run_on(loop: Loop | None, main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` on ``loop``; the service processes started meanwhile use the same loop. With no
    loop, asyncio here and the service's own setting (``EVENT_LOOP``) there."""
    if loop is None:
        return asyncio.run(main)
    os.environ["EVENT_LOOP"] = loop
    return uvloop.run(main) if loop == "uvloop" else asyncio.run(main)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Service:
    """The service as its own process, so its CPU and memory are its own."""

    def __init__(self, prefix: str, database: str, **settings: str) -> None:
        self.prefix, self.database, self.port = prefix, database, free_port()
        self.settings = settings  # more environment for the service (setting name -> value)
        self.process: asyncio.subprocess.Process | None = None

    @classmethod
    def fresh(cls, topics: str, database: str, **settings: str) -> "Service":
        """On a new topic prefix ``{topics}{tag}.`` and database ``{database}_{tag}``."""
        tag = uuid.uuid4().hex[:10]
        return cls(f"{topics}{tag}.", f"{database}_{tag}", **settings)

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    async def start(self) -> float:
        """Start the process and wait until it is ready; seconds that took."""
        env = {
            **os.environ,
            "KAFKA_BOOTSTRAP_SERVERS": KAFKA,
            "MONGODB_URL": MONGODB,
            "MONGODB_DATABASE": self.database,
            "TOPIC_PREFIX": self.prefix,
            "CONSUMER_GROUP": f"{self.prefix}svc",
            "HEALTH_PORT": str(self.port),
            "SYNC_BATCH_SIZE": str(BATCH),
            "LOG_LEVEL": "WARNING",
            **self.settings,
        }
        script = Path(sys.executable).parent / "contact-service"
        started = time.perf_counter()
        self.process = await asyncio.create_subprocess_exec(
            str(script), env=env, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL
        )
        while (await self.get("/readyz")).get("ready") is not True:  # noqa: ASYNC110 (polling HTTP)
            await asyncio.sleep(0.1)
        return time.perf_counter() - started

    async def get(self, path: str) -> dict[str, Any]:
        """A health endpoint's JSON, or /metrics as {sample: value} (labels in the sample's name,
        ``name{label=value,...}``); empty while the process does not listen yet."""
        try:
            body = await asyncio.to_thread(self._fetch, path)
        except OSError:
            return {}
        return _samples(body) if path == "/metrics" else dict(json.loads(body))

    def _fetch(self, path: str) -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        try:
            with urllib.request.urlopen(url, timeout=10) as response:
                return str(response.read().decode())
        except urllib.error.HTTPError as error:  # /readyz answers 503 with its JSON while not ready
            return str(error.read().decode())

    def memory(self) -> dict[str, int]:
        """RSS now (VmRSS) and at its peak (VmHWM), in MB."""
        fields = {}
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            name, _, value = line.partition(":")
            if name in {"VmRSS", "VmHWM"}:
                fields[name] = int(value.split()[0]) // 1024
        return fields

    async def stop(self) -> None:
        """Stop the service, then delete the run's topics (the documents may still be measured)."""
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 60)
        await delete_topics(KAFKA, prefix=self.prefix)


def _samples(text: str) -> dict[str, float]:
    found: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            found[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return found
