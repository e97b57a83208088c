"""The real parts answer: Kafka round trips and consumer-group resume, the store through AsyncMongoClient,
and the running service's readiness."""

import asyncio
import json
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from tests.conftest import Endpoints

pytestmark = pytest.mark.integration


async def test_produce_consume_round_trip(endpoints: Endpoints, isolation: tuple[str, str]) -> None:
    topic = f"{isolation[0]}roundtrip"
    producer = AIOKafkaProducer(bootstrap_servers=endpoints.kafka, acks="all")
    await producer.start()
    try:
        sent = [f"message-{i}".encode() for i in range(5)]
        for value in sent:
            await producer.send_and_wait(topic, value, key=b"k")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(
        topic, bootstrap_servers=endpoints.kafka, auto_offset_reset="earliest", group_id=None
    )
    await consumer.start()
    try:
        got = [(await asyncio.wait_for(consumer.getone(), 20)).value for _ in sent]
    finally:
        await consumer.stop()
    assert got == sent


async def test_consumer_group_resumes_after_its_last_committed_offset(
    endpoints: Endpoints, isolation: tuple[str, str]
) -> None:
    topic, group = f"{isolation[0]}resume", f"{isolation[0]}group"
    producer = AIOKafkaProducer(bootstrap_servers=endpoints.kafka, acks="all")
    await producer.start()
    for i in range(10):
        await producer.send_and_wait(topic, str(i).encode())

    def consumer() -> AIOKafkaConsumer:
        return AIOKafkaConsumer(
            topic,
            bootstrap_servers=endpoints.kafka,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )

    first = consumer()
    await first.start()
    seen = [int((await asyncio.wait_for(first.getone(), 20)).value) for _ in range(4)]
    await first.commit()  # commits offset 4: the next to read
    extra = await asyncio.wait_for(first.getone(), 20)  # read but never committed
    await first.stop()
    assert seen == [0, 1, 2, 3] and int(extra.value) == 4

    for i in range(10, 12):
        await producer.send_and_wait(topic, str(i).encode())
    await producer.stop()
    second = consumer()
    await second.start()
    try:
        resumed = [int((await asyncio.wait_for(second.getone(), 20)).value) for _ in range(8)]
        committed = await second.committed(TopicPartition(topic, 0))
    finally:
        await second.stop()
    assert resumed == [4, 5, 6, 7, 8, 9, 10, 11]
    assert committed == 4


async def test_store_insert_find_update_and_unique_violation(
    endpoints: Endpoints, isolation: tuple[str, str]
) -> None:
    client: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(
        endpoints.mongodb, serverSelectionTimeoutMS=5000
    )
    db = client[isolation[1]]
    try:
        people = db["people"]
        await people.create_index("email", unique=True)
        await people.insert_one({"_id": "a", "email": "a@example.com", "n": 1})
        assert (await people.find_one({"_id": "a"}))["n"] == 1  # type: ignore[index]
        result = await people.update_one({"_id": "a", "n": 1}, {"$set": {"n": 2}})
        assert result.modified_count == 1
        assert (await people.find_one({"email": "a@example.com"}))["n"] == 2  # type: ignore[index]
        with pytest.raises(DuplicateKeyError):
            await people.insert_one({"_id": "b", "email": "a@example.com"})
        with pytest.raises(DuplicateKeyError):
            await people.insert_one({"_id": "a", "email": "other@example.com"})
        assert await people.count_documents({}) == 1
    finally:
        await client.drop_database(isolation[1])
        await client.close()


async def test_running_service_reports_ready(running_service: object) -> None:
    health = running_service.health  # type: ignore[attr-defined]
    reader, writer = await asyncio.open_connection("127.0.0.1", health.port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\n\r\n")
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    status, body = response.split("\r\n", 1)[0], json.loads(response.split("\r\n\r\n", 1)[1])
    assert status == "HTTP/1.1 200 OK"
    assert body == {"ready": True, "broker": True, "store": True}
    # The store's collections and indexes exist after start-up.
    names = await running_service.mongo[running_service.settings.mongodb_database].list_collection_names()  # type: ignore[attr-defined]
    assert {"contacts", "contact_addresses", "processed_commands"} <= set(names)


async def test_readiness_fails_when_the_store_is_unreachable(endpoints: Endpoints) -> None:
    from service.bootstrap import build
    from service.config import Settings

    application = build(
        Settings(
            kafka_bootstrap_servers=endpoints.kafka,
            mongodb_url="mongodb://127.0.0.1:1/?serverSelectionTimeoutMS=300",
            health_port=0,
        )
    )
    ready = await application.health.readiness()
    assert ready == {"broker": False, "store": False} or ready["store"] is False
    await application.mongo.close()
    _ = uuid
