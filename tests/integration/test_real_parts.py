"""The real parts answer: Kafka round trips and consumer-group resume, the store through AsyncMongoClient,
and the running service's readiness."""

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from pymongo import AsyncMongoClient
from pymongo.errors import DuplicateKeyError

from tests.conftest import Endpoints
from tests.factories import present

if TYPE_CHECKING:
    from service.bootstrap import Application

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
        assert present(await people.find_one({"_id": "a"}))["n"] == 1
        result = await people.update_one({"_id": "a", "n": 1}, {"$set": {"n": 2}})
        assert result.modified_count == 1
        assert present(await people.find_one({"email": "a@example.com"}))["n"] == 2
        with pytest.raises(DuplicateKeyError):
            await people.insert_one({"_id": "b", "email": "a@example.com"})
        with pytest.raises(DuplicateKeyError):
            await people.insert_one({"_id": "a", "email": "other@example.com"})
        assert await people.count_documents({}) == 1
    finally:
        await client.drop_database(isolation[1])
        await client.close()


async def test_the_schema_step_runs_again_on_an_existing_database(
    endpoints: Endpoints, isolation: tuple[str, str]
) -> None:
    """Every start runs it: a restart must find the database as it left it, indexes and all."""
    from service.adapters.mongo import INDEXES, ensure_schema, make_client

    client = make_client(endpoints.mongodb)
    db = client[isolation[1]]
    try:
        await ensure_schema(db)
        await db[next(iter(INDEXES))].drop_index(INDEXES[next(iter(INDEXES))][0].document["name"])
        await ensure_schema(db)  # the second start, with one index gone meanwhile
        for name, indexes in INDEXES.items():
            present = {index["name"] async for index in await db[name].list_indexes()}
            assert {index.document["name"] for index in indexes} <= present, name
    finally:
        await client.drop_database(isolation[1])
        await client.close()


async def test_running_service_reports_ready(running_service: "Application") -> None:
    health = running_service.health
    reader, writer = await asyncio.open_connection("127.0.0.1", health.port)
    writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    await writer.drain()
    response = (await reader.read()).decode()
    writer.close()
    status, body = response.split("\r\n", 1)[0], json.loads(response.split("\r\n\r\n", 1)[1])
    assert status == "HTTP/1.1 200 OK"
    assert body == {"ready": True, "broker": True, "store": True}
    # The store's collections and indexes exist after start-up.
    names = await running_service.mongo[running_service.settings.mongodb_database].list_collection_names()
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
    await application.broker.connect()  # the broker only: no subscribers against a dead store
    try:
        assert await application.health.readiness() == {"broker": True, "store": False}
    finally:
        await application.broker.stop()
        await application.mongo.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_console_script_starts_reports_ready_and_stops_cleanly_on_sigterm(
    endpoints: Endpoints, isolation: tuple[str, str]
) -> None:
    port = _free_port()
    env = {
        **os.environ,
        "KAFKA_BOOTSTRAP_SERVERS": endpoints.kafka,
        "MONGODB_URL": endpoints.mongodb,
        "MONGODB_DATABASE": isolation[1],
        "TOPIC_PREFIX": isolation[0],
        "CONSUMER_GROUP": f"{isolation[0]}svc",
        "HEALTH_PORT": str(port),
    }
    script = Path(sys.executable).parent / "contact-service"
    process = await asyncio.create_subprocess_exec(
        str(script), env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    try:
        ready = False
        for _ in range(120):
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.write(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                ready = (await reader.read()).startswith(b"HTTP/1.1 200")
                writer.close()
            except ConnectionError:
                pass
            if ready:
                break
            await asyncio.sleep(0.5)
        assert ready, "service never reported ready"
        process.send_signal(signal.SIGTERM)
        code = await asyncio.wait_for(process.wait(), 30)
        output = (await present(process.stdout).read()).decode()
        assert code == 0, output
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
        cleanup: AsyncMongoClient[dict[str, object]] = AsyncMongoClient(endpoints.mongodb)
        await cleanup.drop_database(isolation[1])
        await cleanup.close()


def test_a_bad_setting_stops_start_up_with_a_clear_error() -> None:
    script = Path(sys.executable).parent / "contact-service"
    result = subprocess.run(
        [str(script)],
        env={**os.environ, "DEFAULT_REGION": "Atlantis", "TOPIC_PARTITIONS": "0"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    assert "DEFAULT_REGION" in result.stderr and "TOPIC_PARTITIONS" in result.stderr, result.stderr
