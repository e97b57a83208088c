"""A small asyncio client for callers of the contact service (needs aiokafka).

Each client instance reads its replies from one reply topic, keeps a table of pending requests by
correlation id, and resolves them from one background reader, so many concurrent calls share one
consumer::

    async with ContactClient("127.0.0.1:9092") as client:
        reply = await client.lookup_phone(customer_id, "+15551234567", timeout=0.5)

The reply topic: by default the client makes its own (``contacts.replies.<random>``, one partition,
the broker's default replication factor) and deletes it when it stops. Given ``reply_topic``, it
uses that one (made if missing, with the same settings), reads all its partitions, and leaves it in
place for the next client: callers that start many short-lived clients, or may not create and
delete topics, pass one.
"""

import asyncio
import contextlib
import json
import logging
import time
import uuid
from types import TracebackType
from typing import Any, Final, TypeVar

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError, UnknownTopicOrPartitionError, for_code
from pydantic import BaseModel

from contracts import headers, topics
from contracts import queries as q
from contracts.commands import ContactCommand
from contracts.replies import (
    BatchLookupReply,
    BulkCreateReply,
    BulkDeleteReply,
    ContactListReply,
    ContactReply,
)
from contracts.security import KafkaSecurity

R = TypeVar("R", bound=BaseModel)

log = logging.getLogger(__name__)

BROKER_DEFAULT_REPLICATION: Final = -1
"""CreateTopics' "use the broker's ``default.replication.factor``" (Kafka 2.4+, KIP-464)."""

REPLY_TOPIC_DELETE_TIMEOUT: Final = 10.0
"""Seconds ``stop()`` spends at most deleting the client's own reply topic."""


class RequestTimeout(TimeoutError):
    """No reply arrived in time."""


class ContactClient:
    def __init__(
        self,
        bootstrap_servers: str,
        *,
        topic_prefix: str = "",
        reply_topic: str | None = None,
        client_id: str = "contact-client",
        security: KafkaSecurity | None = None,
    ) -> None:
        self._options = {
            "bootstrap_servers": bootstrap_servers,
            **(security or KafkaSecurity()).client_options(),
        }
        self._prefix = topic_prefix
        self.reply_topic = reply_topic or f"{topic_prefix}contacts.replies.{uuid.uuid4().hex[:12]}"
        self.owns_reply_topic = reply_topic is None
        """True when this client made its reply topic (and deletes it on ``stop()``)."""
        self._reply_topic_made = False
        self._client_id = client_id
        self._pending: dict[str, asyncio.Future[bytes]] = {}
        self._producer: AIOKafkaProducer | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> "ContactClient":
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def start(self) -> None:
        try:
            partitions = await self._ensure_reply_topic()
            self._producer = AIOKafkaProducer(
                **self._options,
                acks="all",
                enable_idempotence=True,
                client_id=self._client_id,
            )
            await self._producer.start()
            # No consumer group: this instance reads the reply topic alone (or, on a shared reply
            # topic, beside other clients that skip what is not theirs), from the end.
            self._consumer = AIOKafkaConsumer(
                **self._options,
                enable_auto_commit=False,
                client_id=self._client_id,
                fetch_max_wait_ms=20,
            )
            await self._consumer.start()
            self._consumer.assign(partitions)
            await self._consumer.seek_to_end(*partitions)
            for partition in partitions:
                await self._consumer.position(partition)
        except BaseException:
            await self.stop()
            raise
        self._reader = asyncio.create_task(self._read_replies(), name=f"replies:{self.reply_topic}")

    async def stop(self) -> None:
        """Cancel pending calls, close the Kafka clients and delete the client's own reply topic
        (a passed ``reply_topic`` is kept). Safe to call twice."""
        if self._reader is not None:
            self._reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader
            self._reader = None
        for future in self._pending.values():
            future.cancel()
        self._pending.clear()
        if self._consumer is not None:
            await self._consumer.stop()
            self._consumer = None
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None
        if self._reply_topic_made:
            self._reply_topic_made = False
            await self._delete_reply_topic()

    def _admin(self) -> AIOKafkaAdminClient:
        """An admin client with the same servers and security as the producer and consumer."""
        return AIOKafkaAdminClient(**self._options, client_id=self._client_id)

    async def _ensure_reply_topic(self) -> list[TopicPartition]:
        """The reply topic's partitions, after making the topic when it is the client's own or a
        passed one that does not exist yet."""
        admin = self._admin()
        await admin.start()
        try:
            if not self.owns_reply_topic:
                # Describe first: a caller that passes its topic may not be allowed to create one.
                (described,) = await admin.describe_topics([self.reply_topic])
                if described["error_code"] == 0 and described["partitions"]:
                    numbers = sorted(p["partition"] for p in described["partitions"])
                    return [TopicPartition(self.reply_topic, n) for n in numbers]
                if described["error_code"] != UnknownTopicOrPartitionError.errno:
                    raise for_code(described["error_code"])(f"describing reply topic {self.reply_topic}")
            else:
                self._reply_topic_made = True  # from here on, stop() deletes it
            # NewTopic refuses -1 without replica assignments; an empty one sends the same request.
            topic = NewTopic(self.reply_topic, 1, BROKER_DEFAULT_REPLICATION, replica_assignments={})
            response = await admin.create_topics([topic])
            for error in response.to_object()["topic_errors"]:
                if error["error_code"] not in (0, TopicAlreadyExistsError.errno):
                    raise for_code(error["error_code"])(
                        f"creating reply topic {self.reply_topic}: {error['error_message']}"
                    )
        finally:
            await admin.close()
        return [TopicPartition(self.reply_topic, 0)]

    async def _delete_reply_topic(self) -> None:
        """Delete the client's own reply topic; a failure is logged, never raised (the topic is
        then left behind, as it always was before clients cleaned up)."""
        admin = self._admin()
        try:
            async with asyncio.timeout(REPLY_TOPIC_DELETE_TIMEOUT):
                await admin.start()
                response = await admin.delete_topics([self.reply_topic])
            for error in response.to_object()["topic_error_codes"]:
                if error["error_code"] not in (0, UnknownTopicOrPartitionError.errno):
                    log.warning(
                        "reply topic %s not deleted: %s",
                        self.reply_topic,
                        for_code(error["error_code"]).message,
                    )
        except Exception as exc:
            log.warning("reply topic %s not deleted: %r", self.reply_topic, exc)
        finally:
            with contextlib.suppress(Exception):
                await admin.close()

    async def _read_replies(self) -> None:
        assert self._consumer is not None
        async for record in self._consumer:
            correlation = dict(record.headers or ()).get(headers.CORRELATION_ID, b"").decode()
            future = self._pending.pop(correlation, None)
            if future is not None and not future.done():
                future.set_result(record.value or b"")

    # --- raw calls ---

    async def send(self, topic: str, payload: BaseModel | dict[str, Any], *, key: str | None = None) -> None:
        """Fire and forget (still waits for the broker's ack)."""
        assert self._producer is not None, "start() the client first"
        await self._producer.send_and_wait(
            self._prefix + topic, _encode(payload), key=key.encode() if key else None
        )

    async def send_raw(self, topic: str, value: bytes, *, key: str | None = None) -> None:
        """Fire and forget raw bytes (still waits for the broker's ack)."""
        assert self._producer is not None, "start() the client first"
        await self._producer.send_and_wait(self._prefix + topic, value, key=key.encode() if key else None)

    async def request_raw(
        self,
        topic: str,
        value: bytes,
        *,
        key: str | None = None,
        timeout: float = 5.0,
        deadline: float | None = None,
        extra_headers: list[tuple[str, bytes]] | None = None,
    ) -> bytes:
        """Send ``value`` and wait for its reply. ``deadline`` (epoch seconds, default now + timeout)
        tells the service when an answer stops being useful."""
        assert self._producer is not None, "start() the client first"
        correlation_id = uuid.uuid4().hex
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._pending[correlation_id] = future
        request_headers = [
            (headers.REPLY_TO, self.reply_topic.encode()),
            (headers.CORRELATION_ID, correlation_id.encode()),
            (headers.DEADLINE, str(int((deadline or time.time() + timeout) * 1000)).encode()),
            ("content-type", b"application/json"),
            *(extra_headers or []),
        ]
        try:
            await self._producer.send_and_wait(
                self._prefix + topic,
                value,
                key=key.encode() if key else None,
                headers=request_headers,
            )
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise RequestTimeout(f"no reply on {self.reply_topic} within {timeout}s") from exc
        finally:
            self._pending.pop(correlation_id, None)

    async def request(
        self,
        topic: str,
        payload: BaseModel | dict[str, Any],
        reply_type: type[R],
        *,
        key: str | None = None,
        timeout: float = 5.0,
    ) -> R:
        raw = await self.request_raw(topic, _encode(payload), key=key, timeout=timeout)
        return reply_type.model_validate_json(raw)

    # --- typed calls ---

    async def command(self, command: ContactCommand, *, timeout: float = 10.0) -> ContactReply:
        return await self.request(
            topics.COMMANDS, command, ContactReply, key=command.customer_id, timeout=timeout
        )

    async def bulk_create(self, command: ContactCommand, *, timeout: float = 60.0) -> BulkCreateReply:
        return await self.request(
            topics.COMMANDS, command, BulkCreateReply, key=command.customer_id, timeout=timeout
        )

    async def bulk_delete(self, command: ContactCommand, *, timeout: float = 60.0) -> BulkDeleteReply:
        return await self.request(
            topics.COMMANDS, command, BulkDeleteReply, key=command.customer_id, timeout=timeout
        )

    async def get(self, customer_id: str, contact_id: str, *, timeout: float = 5.0) -> ContactReply:
        query = q.GetContact(customer_id=customer_id, contact_id=contact_id)
        return await self.request(topics.QUERIES, query, ContactReply, key=customer_id, timeout=timeout)

    async def list_contacts(
        self, customer_id: str, *, page_size: int = 10, page_token: str = "", timeout: float = 5.0
    ) -> ContactListReply:
        query = q.ListContacts(customer_id=customer_id, page_size=page_size, page_token=page_token)
        return await self.request(topics.QUERIES, query, ContactListReply, key=customer_id, timeout=timeout)

    async def lookup_phone(
        self, customer_id: str, phone: str, *, region: str | None = None, timeout: float = 2.0
    ) -> ContactReply:
        query = q.LookupContact(customer_id=customer_id, phone=phone, region=region)
        return await self.request(topics.LOOKUPS, query, ContactReply, key=phone, timeout=timeout)

    async def lookup_email(self, customer_id: str, email: str, *, timeout: float = 2.0) -> ContactReply:
        query = q.LookupContact(customer_id=customer_id, email=email)
        return await self.request(topics.LOOKUPS, query, ContactReply, key=email.lower(), timeout=timeout)

    async def lookup_phones(
        self,
        customer_id: str,
        phones: list[str],
        *,
        region: str | None = None,
        timeout: float = 2.0,
    ) -> BatchLookupReply:
        query = q.BatchLookupContacts(customer_id=customer_id, phones=phones, region=region)
        return await self.request(topics.LOOKUPS, query, BatchLookupReply, key=customer_id, timeout=timeout)


def _encode(payload: BaseModel | dict[str, Any]) -> bytes:
    if isinstance(payload, BaseModel):
        return payload.model_dump_json().encode()
    return json.dumps(payload).encode()
