"""Keeps the caller directory current: a scan of the store, then the contact-changed events topic.

Start-up: note the events topic's end offsets, scan the contacts collection into the directory,
then read the topic from those offsets on. A change written to the store is published after it is
written, so every change is either in the scan or after the noted offsets (or both: versions make
applying one twice harmless). The consumer has no group: every instance reads every partition.

Barrier (``caught_up``): a lookup may be answered from the directory once the directory has applied
the events topic up to the end offsets the broker reports *after* the lookup arrived. Events are
published with acks=all before the command that caused them is answered, so the end offsets cover
every change a caller could have been told about. One ListOffsets round answers every lookup that
arrived before it was sent; it goes over a connection of its own, not behind the reader's long poll.
"""

import asyncio
import contextlib
import gc
import json
import logging
import time
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRecord, TopicPartition
from pymongo.asynchronous.database import AsyncDatabase

from service.adapters.kafka import topic_partitions
from service.adapters.mongo import Doc, every_contact
from service.service_layer.directory import CallerDirectory
from service.service_layer.mapping import contact_json

log = logging.getLogger("contact_service.directory")

Offsets = dict[TopicPartition, int]


class DirectoryOverflow(Exception):
    """More contacts than the directory may hold: lookups stay with the store."""


class KafkaDirectoryFeed:
    """Loads and follows; ``caught_up`` is the barrier lookups wait on."""

    def __init__(
        self,
        *,
        directory: CallerDirectory,
        db: AsyncDatabase[Doc],
        client_options: dict[str, Any],
        topic: str,
        max_contacts: int,
        wait_seconds: float,
        client_id: str = "contact-service-directory",
    ) -> None:
        self.directory = directory
        self._db, self._client_options, self._topic = db, client_options, topic
        self._max_contacts, self._wait = max_contacts, wait_seconds
        self._client_id = client_id
        self._ready = False
        self._task: asyncio.Task[None] | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._partitions: list[TopicPartition] = []
        self._applied: Offsets = {}
        self._moved: asyncio.Future[None] | None = None
        self._next_round: asyncio.Future[Offsets] | None = None
        self._round_running = False
        self._round_task: asyncio.Task[None] | None = None
        self.stats: dict[str, int] = {"directory_trusted": 0, "directory_behind": 0, "directory_loads": 0}
        self.load_seconds: float | None = None

    @property
    def ready(self) -> bool:
        return self._ready

    # --- lifecycle ---

    async def start(self) -> None:
        """Start loading and following in the background; lookups use the store until loaded."""
        self._offsets = AIOKafkaConsumer(
            **self._client_options,
            client_id=f"{self._client_id}-offsets",
            enable_auto_commit=False,
        )
        await self._offsets.start()
        self._task = asyncio.create_task(self._run(), name="caller-directory")

    async def stop(self) -> None:
        self._ready = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._offsets is not None:
            await self._offsets.stop()

    async def _run(self) -> None:
        backoff = 0.5
        while True:
            consumer = AIOKafkaConsumer(
                **self._client_options,
                client_id=self._client_id,
                enable_auto_commit=False,
                # Past the topic's retention the directory may have missed changes: reload.
                auto_offset_reset="none",
            )
            try:
                await consumer.start()
                await self._load(consumer)
                backoff = 0.5
                await self._follow(consumer)
            except asyncio.CancelledError:
                raise
            except DirectoryOverflow as exc:
                log.warning("caller directory off, lookups read the store: %s", exc)
                self.directory.clear()
                return
            except Exception:
                log.exception("caller directory lost its feed; lookups read the store until it reloads")
                await asyncio.sleep(backoff)
                backoff = min(backoff * 2, 30.0)
            finally:
                self._ready = False
                self._wake()
                await consumer.stop()

    async def _load(self, consumer: AIOKafkaConsumer) -> None:
        began = time.perf_counter()
        self._ready = False
        self.directory.clear()
        self._partitions = await topic_partitions(consumer, self._topic)
        if not self._partitions:
            raise RuntimeError(f"topic {self._topic} has no partitions yet")
        consumer.assign(self._partitions)
        start = await consumer.end_offsets(self._partitions)
        # Deleted contacts too: their versions keep older events from bringing them back.
        async for contact in every_contact(self._db):
            self.directory.apply(contact_json(contact), version=contact.version)
            self._check_size()
        for partition, offset in start.items():
            consumer.seek(partition, offset)
        self._applied = dict(start)
        assert self._offsets is not None
        await self._offsets.end_offsets(self._partitions)  # its metadata, before the first lookup asks
        # A directory of a million contacts is millions of objects that never die young: out of
        # the collector's sight, full collections stop pausing lookups for tens of milliseconds.
        gc.freeze()
        self.stats["directory_loads"] += 1
        self.load_seconds = round(time.perf_counter() - began, 2)
        log.info(
            "caller directory loaded: %d contacts (%d active) in %.1fs",
            len(self.directory),
            self.directory.active,
            self.load_seconds,
        )
        self._ready = True

    def _check_size(self) -> None:
        if len(self.directory) > self._max_contacts:
            raise DirectoryOverflow(
                f"more than LOOKUP_DIRECTORY_MAX_CONTACTS={self._max_contacts} contacts in the store"
            )

    async def _follow(self, consumer: AIOKafkaConsumer) -> None:
        while True:
            batches = await consumer.getmany(timeout_ms=1000, max_records=2000)
            for partition, records in batches.items():
                for record in records:
                    self._apply(record)
                # The consumer's position, not last offset + 1: it also steps over control records.
                self._applied[partition] = await consumer.position(partition)
            self._check_size()
            self._wake()

    def _apply(self, record: ConsumerRecord[Any, Any]) -> None:
        # Our own topic, written only by this service. An event that does not parse means the
        # directory can no longer know it is current: the error reloads it.
        event = json.loads(record.value)
        self.directory.apply(event["contact"], version=int(event["version"]))

    def _wake(self) -> None:
        if self._moved is not None and not self._moved.done():
            self._moved.set_result(None)
        self._moved = None

    # --- the barrier ---

    async def caught_up(self) -> bool:
        if not self._ready:
            return False
        try:
            async with asyncio.timeout(self._wait):
                ends = await self._end_offsets()
                while self._ready and any(self._applied.get(p, 0) < end for p, end in ends.items()):
                    if self._moved is None:
                        self._moved = asyncio.get_running_loop().create_future()
                    await asyncio.shield(self._moved)
        except Exception:  # too slow, or the broker did not answer: the store answers instead
            self.stats["directory_behind"] += 1
            return False
        self.stats["directory_trusted"] += self._ready
        return self._ready

    async def _end_offsets(self) -> Offsets:
        # A round already sent may predate this lookup: join the next one.
        round_ = self._next_round
        if round_ is None:
            loop = asyncio.get_running_loop()
            round_ = self._next_round = loop.create_future()
            if not self._round_running:
                # Sent on the loop's next turn, so lookups started in this one share the round.
                self._round_running = True
                loop.call_soon(self._send_round)
        return await asyncio.shield(round_)

    def _send_round(self) -> None:
        round_, self._next_round = self._next_round, None
        if round_ is None:
            self._round_running = False
            return
        self._round_running = True
        self._round_task = asyncio.create_task(self._ask(round_))

    async def _ask(self, round_: "asyncio.Future[Offsets]") -> None:
        assert self._offsets is not None
        try:
            round_.set_result(await self._offsets.end_offsets(self._partitions))
        except Exception as exc:
            round_.set_exception(exc)
            round_.exception()  # retrieved: every waiter may have timed out already
        finally:
            self._send_round()  # the lookups that arrived meanwhile, if any
