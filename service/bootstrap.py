"""The composition root: the one place that picks concrete classes and wires them together."""

import contextlib
import gc
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError
from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.specification import AsyncAPI
from pymongo import AsyncMongoClient

from contracts import topics
from contracts.events import ContactEvent
from contracts.sync import SyncResult
from service.adapters.directory_feed import KafkaDirectoryFeed
from service.adapters.kafka import KafkaEventPublisher
from service.adapters.mongo import (
    MongoAddressBook,
    MongoCommandLog,
    MongoContactRepository,
    MongoSyncStates,
    ensure_schema,
    make_client,
)
from service.config import Settings
from service.entrypoints import commands, crm_sync, lookups, queries
from service.entrypoints.health import HealthServer
from service.entrypoints.messaging import (
    Counters,
    DeadLetters,
    FailurePolicy,
    Replier,
    tolerant_parser,
)
from service.service_layer.context import Services
from service.service_layer.directory import CallerDirectory

log = logging.getLogger("contact_service")

DESCRIPTION = """\
The address book behind calls and messages. Contacts with several phone numbers (normalized to
E.164), emails, tags, source and external CRM id; lookup by phone or email for caller identity;
soft delete; pagination. Commands are applied exactly once per command_id and announced as
contact-changed events keyed by contact id. Requests carrying reply_to (+ correlation_id) are
answered on that topic. Bad input is answered with an error reply, or dead-lettered with the
reason in headers when no reply was asked for."""


class UtcClock:
    def now(self) -> datetime:
        return datetime.now(UTC)


@dataclass
class Application:
    """Everything started and stopped together: the FastStream app and what it depends on."""

    app: FastStream
    broker: KafkaBroker
    mongo: AsyncMongoClient[dict[str, Any]]
    services: Services
    health: HealthServer
    counters: Counters
    settings: Settings


def build(
    settings: Settings | None = None, *, adapt: Callable[[Services], Services] | None = None
) -> Application:
    """Wire the application. ``adapt`` may wrap the services (tests inject faults through it)."""
    settings = settings or Settings()
    logging.basicConfig(level=settings.log_level, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    broker = KafkaBroker(
        settings.kafka_bootstrap_servers,
        acks="all",
        enable_idempotence=True,
        client_id="contact-service",
        # FastStream logs "Received"/"Processed" per message at this level: per-message noise
        # (and ~5 % of a lookup's CPU) at INFO; visible with LOG_LEVEL=DEBUG.
        log_level=logging.DEBUG,
        description="Kafka cluster carrying contact commands, queries, lookups and events.",
    )
    mongo = make_client(settings.mongodb_url)
    db = mongo[settings.mongodb_database]

    router = KafkaRouter()
    events = router.publisher(
        settings.topic(topics.EVENTS),
        title="contact-events",
        description=(
            "contact.created / contact.updated / contact.deleted: the whole contact after the change, "
            "changed_fields, a per-contact version, the cause (command id and type) and an event_id to "
            "dedupe on. Keyed by contact id; headers event_type and event_id."
        ),
        schema=ContactEvent,
    )
    dead_letter_publisher = router.publisher(
        settings.topic(topics.DEAD_LETTERS),
        title="contact-dead-letters",
        description=(
            "Messages that could not be parsed or applied, value unchanged, with headers dlq_reason "
            "(an ErrorCode), dlq_message, dlq_field and dlq_source_topic/partition/offset."
        ),
        schema=bytes,
    )
    sync_results = router.publisher(
        settings.topic(topics.SYNC_RESULTS),
        title="crm-sync-results",
        description=(
            "One SyncResult per CRM sync item that could not be applied (for example "
            "ADDRESS_ALREADY_EXISTS when a synced number belongs to another contact), keyed like "
            "the sync message, with the source topic/partition/offset."
        ),
        schema=SyncResult,
    )
    directory = (
        KafkaDirectoryFeed(
            directory=CallerDirectory(),
            db=db,
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topic=settings.topic(topics.EVENTS),
            max_contacts=settings.lookup_directory_max_contacts,
            wait_seconds=settings.lookup_directory_wait_ms / 1000,
        )
        if settings.lookup_directory
        else None
    )
    services = Services(
        contacts=MongoContactRepository(db),
        addresses=MongoAddressBook(db),
        log=MongoCommandLog(db),
        events=KafkaEventPublisher(events),
        clock=UtcClock(),
        sync_states=MongoSyncStates(db),
        default_region=settings.default_region,
        claim_grace=timedelta(seconds=settings.claim_grace_seconds),
        directory=directory,
    )
    if adapt is not None:
        services = adapt(services)
    counters = Counters()
    replier = Replier(bootstrap_servers=settings.kafka_bootstrap_servers, counters=counters)
    dead_letters = DeadLetters(dead_letter_publisher)
    policy = FailurePolicy(
        replier=replier,
        dead_letters=dead_letters,
        backoff_max=settings.retry_backoff_max_seconds,
        max_attempts=settings.max_delivery_attempts,
    )
    command_router = KafkaRouter(middlewares=[policy])
    command_batches = commands.Commands(
        svc=services,
        replier=replier,
        dead_letters=dead_letters,
        max_attempts=settings.max_delivery_attempts,
        backoff_max=settings.retry_backoff_max_seconds,
    )
    commands.build_router(settings=settings, commands=command_batches, replier=replier, router=command_router)
    router.include_router(command_router)
    query_router = KafkaRouter(middlewares=[policy], parser=tolerant_parser)
    queries.build_router(settings=settings, svc=services, replier=replier, router=query_router)
    router.include_router(query_router)
    answers = lookups.Answers(
        limit=settings.lookup_workers, svc=services, replier=replier, dead_letters=dead_letters
    )
    lookup_router = KafkaRouter(middlewares=[policy])
    lookups.build_router(settings=settings, answers=answers, router=lookup_router)
    router.include_router(lookup_router)
    sync_router = KafkaRouter(middlewares=[policy])
    crm_sync.build_router(
        settings=settings,
        svc=services,
        dead_letters=dead_letters,
        results=sync_results,
        counters=counters,
        router=sync_router,
    )
    router.include_router(sync_router)
    broker.include_router(router)

    async def mongo_ready() -> bool:
        await mongo.admin.command("ping")
        return True

    async def broker_ready() -> bool:
        return await broker.ping(timeout=2)

    health = HealthServer(
        host=settings.health_host,
        port=settings.health_port,
        checks={"broker": broker_ready, "store": mongo_ready},
        metrics=lambda: dict(counters.values) | (directory_metrics(directory) if directory else {}),
    )

    async def on_startup() -> None:
        await ensure_schema(db)
        await ensure_topics(settings)
        await replier.start()
        if directory is not None:
            await directory.start()

    async def after_startup() -> None:
        # What start-up built lives as long as the process: out of the collector's sight, a full
        # collection no longer walks it (80-110 ms for ~90,000 objects here, a stall for every
        # lookup in flight). The caller directory freezes what it loads the same way.
        gc.freeze()
        # Started only once the subscribers run, so "ready" means messages are being consumed.
        await health.start()
        log.info(
            "contact-service ready; health on http://%s:%d/readyz",
            settings.health_host,
            health.port,
        )

    async def on_shutdown() -> None:
        await health.stop()

    async def after_shutdown() -> None:
        await answers.drain()  # the subscribers have stopped: answer what was taken, then close
        if directory is not None:
            await directory.stop()
        await replier.stop()
        await mongo.close()
        gc.unfreeze()  # what was frozen may be garbage now (a process running the app again: tests)

    app = FastStream(
        broker,
        on_startup=[on_startup],
        after_startup=[after_startup],
        on_shutdown=[on_shutdown],
        after_shutdown=[after_shutdown],
        specification=AsyncAPI(title="contact-service", version="1.0.0", description=DESCRIPTION),
    )
    return Application(
        app=app,
        broker=broker,
        mongo=mongo,
        services=services,
        health=health,
        counters=counters,
        settings=settings,
    )


def directory_metrics(feed: KafkaDirectoryFeed) -> dict[str, int]:
    return feed.stats | {
        "directory_ready": int(feed.ready),
        "directory_contacts": feed.directory.active,
        "directory_load_ms": int((feed.load_seconds or 0) * 1000),
    }


async def ensure_topics(settings: Settings) -> None:
    """Create the service's topics with the configured partitions; existing topics are left alone."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=settings.kafka_bootstrap_servers, client_id="contact-service-admin"
    )
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(name, settings.topic_partitions, settings.topic_replication_factor)
            for name in settings.all_topics()
            if name not in existing
        ]
        if wanted:
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(wanted)
    finally:
        await admin.close()
