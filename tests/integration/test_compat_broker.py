"""The assumptions of service/compat.py that only a real broker can check."""

import asyncio
import uuid

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from service.compat import cluster_metadata, group_state, start_consumer
from tests.conftest import Endpoints

pytestmark = pytest.mark.integration


async def test_group_state_counts_live_members_and_a_fresh_topic_shows_its_partitions(
    endpoints: Endpoints, isolation: tuple[str, str]
) -> None:
    topic, group = f"{isolation[0]}compat", f"{isolation[0]}group-{uuid.uuid4().hex[:6]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=endpoints.kafka)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(topic, 2, 1)])
        assert await group_state(admin, group) in {("Dead", 0), ("Empty", 0)}
        member = AIOKafkaConsumer(topic, bootstrap_servers=endpoints.kafka, group_id=group)
        await member.start()
        try:
            while not member.assignment():
                await member.getmany(timeout_ms=200)
            assert await group_state(admin, group) == ("Stable", 1)
        finally:
            await member.stop()
        await asyncio.sleep(0.5)
        assert (await group_state(admin, group))[1] == 0
    finally:
        await admin.close()

    plain = await start_consumer(AIOKafkaConsumer(bootstrap_servers=endpoints.kafka))
    try:
        assert (await cluster_metadata(plain)).partitions_for_topic(topic) == {0, 1}
    finally:
        await plain.stop()  # right after start: start_consumer's extra turn keeps this from raising
