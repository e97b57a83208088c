"""The echo baseline: a bare aiokafka responder answering each request with its own bytes, on its
``reply_to`` topic, with its ``correlation_id``: Kafka request/reply with no work in between.

It runs in a process of its own, as the service does (``EchoProcess`` starts
``python -m tests.benchmarks.echo --topic ... --partitions ...``).
"""

import argparse
import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
from collections.abc import Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from contracts import headers
from tests.benchmarks.process import KAFKA, add_loop_option, run_on

log = logging.getLogger("bench_echo")


class EchoResponder:
    """A group consumer on ``topic`` that echoes each request to its ``reply_to``."""

    def __init__(self, bootstrap: str, topic: str, *, partitions: int) -> None:
        self.bootstrap, self.topic, self.partitions = bootstrap, topic, partitions
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "EchoResponder":
        admin = AIOKafkaAdminClient(bootstrap_servers=self.bootstrap, client_id="bench-echo-admin")
        await admin.start()
        try:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics([NewTopic(self.topic, self.partitions, 1)])
        finally:
            await admin.close()
        # Same producer settings as the service's Replier: leader ack only, no linger.
        self._producer = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap, client_id="bench-echo", acks=1, linger_ms=0
        )
        await self._producer.start()
        self._consumer = AIOKafkaConsumer(
            self.topic,
            bootstrap_servers=self.bootstrap,
            group_id=f"{self.topic}.echo",
            client_id="bench-echo",
            auto_offset_reset="latest",
        )
        await self._consumer.start()
        self._task = asyncio.create_task(self._serve(), name="bench-echo")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._consumer is not None:
            await self._consumer.stop()
        if self._producer is not None:
            await self._producer.stop()

    async def _serve(self) -> None:
        assert self._consumer is not None and self._producer is not None
        async for record in self._consumer:
            found = dict(record.headers or ())
            reply_to, correlation = found.get(headers.REPLY_TO), found.get(headers.CORRELATION_ID)
            if reply_to and correlation is not None:
                # send() only enqueues; the ack is not waited for, so one slow ack blocks nothing.
                ack = await self._producer.send(
                    reply_to.decode(),
                    record.value,
                    headers=[("content-type", b"application/json"), (headers.CORRELATION_ID, correlation)],
                )
                ack.add_done_callback(_log_failure)


def _log_failure(ack: "asyncio.Future[Any]") -> None:
    if not ack.cancelled() and ack.exception() is not None:
        log.warning("echo reply failed: %r", ack.exception())


class EchoProcess:
    """The echo responder in a process of its own, on the event loop this process runs on."""

    def __init__(self, topic: str, partitions: int) -> None:
        self.topic, self.partitions = topic, partitions
        self.process: asyncio.subprocess.Process | None = None

    @property
    def pid(self) -> int:
        assert self.process is not None, "not started"
        return self.process.pid

    async def __aenter__(self) -> "EchoProcess":
        self.process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.benchmarks.echo",
            "--topic",
            self.topic,
            "--partitions",
            str(self.partitions),
            "--loop",
            os.environ.get("EVENT_LOOP", "asyncio"),
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.process is not None and self.process.returncode is None:
            self.process.send_signal(signal.SIGTERM)
            await asyncio.wait_for(self.process.wait(), 30)


async def serve(topic: str, partitions: int) -> None:
    """The echo responder's process: answer until SIGTERM."""
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    async with EchoResponder(KAFKA, topic, partitions=partitions):
        gc.freeze()  # as the service and the driver do: no full collection stalls a reply
        await stop.wait()


def run(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="The echo responder alone (bench_lookup starts it).")
    parser.add_argument("--topic", required=True, help="the full request topic name, prefix included")
    parser.add_argument("--partitions", type=int, required=True)
    add_loop_option(parser)
    args = parser.parse_args(argv)
    run_on(args.loop, serve(args.topic, args.partitions))


if __name__ == "__main__":
    run()
