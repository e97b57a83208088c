"""The composition root: the one place that picks concrete classes and wires them together."""

import asyncio
import gc
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka.errors import KafkaConnectionError
from faststream import FastStream
from faststream.kafka import KafkaBroker, KafkaRouter
from faststream.kafka.opentelemetry import KafkaTelemetryMiddleware
from faststream.kafka.prometheus import KafkaPrometheusMiddleware
from faststream.specification import AsyncAPI
from opentelemetry import trace
from pymongo import AsyncMongoClient
from pymongo.asynchronous.database import AsyncDatabase
from pymongo.errors import ConnectionFailure

from contracts import topics
from service import tracing
from service.adapters.directory_feed import KafkaDirectoryFeed
from service.adapters.kafka import KafkaEventPublisher, sample_lag_forever
from service.adapters.kafka_setup import broker_security, check_kafka_access, ensure_topics
from service.adapters.mongo import (
    MongoAddressBook,
    MongoCommandLog,
    MongoContactRepository,
    MongoSyncStates,
    ensure_schema,
    make_client,
)
from service.compat import KafkaPublisher, tolerant_parser
from service.config import Settings
from service.entrypoints import commands, crm_sync, lookups, publishers, queries
from service.entrypoints.dead_letters import DeadLetters
from service.entrypoints.failures import FailurePolicy
from service.entrypoints.health import HealthServer
from service.entrypoints.metrics import Metrics
from service.entrypoints.replies import Replier
from service.service_layer.context import Services
from service.service_layer.directory import CallerDirectory

log = logging.getLogger("contact_service")
Database = AsyncDatabase[dict[str, Any]]

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
    metrics: Metrics
    settings: Settings


def build(
    settings: Settings | None = None, *, adapt: Callable[[Services], Services] | None = None
) -> Application:
    """Wire the application. ``adapt`` may wrap the services (tests inject faults through it)."""
    settings = settings or Settings()
    metrics = Metrics()
    broker = make_broker(settings, metrics)
    mongo = make_client(settings.mongodb_url)
    db = mongo[settings.mongodb_database]
    router = KafkaRouter()
    out = publishers.declare(router, settings)
    directory = make_directory(settings, db, metrics) if settings.lookup_directory else None
    services = make_services(settings, db, events=out.events, directory=directory)
    if adapt is not None:
        services = adapt(services)
    wiring = Messaging.make(settings, metrics)
    answers = include_routers(router, settings, services, wiring, sync_results=out.sync_results)
    broker.include_router(router)
    health = make_health(settings, broker, mongo, metrics)
    lifecycle = Lifecycle(settings, db, mongo, wiring, directory, health, answers)
    app = FastStream(
        broker,
        logger=logging.getLogger("contact_service.faststream"),
        on_startup=[lifecycle.on_startup],
        after_startup=[lifecycle.after_startup],
        on_shutdown=[lifecycle.on_shutdown],
        after_shutdown=[lifecycle.after_shutdown],
        specification=AsyncAPI(title="contact-service", version="1.0.0", description=DESCRIPTION),
    )
    return Application(app, broker, mongo, services, health, metrics, settings)


def make_broker(settings: Settings, metrics: Metrics) -> KafkaBroker:
    return KafkaBroker(
        settings.kafka_bootstrap_servers,
        security=broker_security(settings.kafka_security),
        middlewares=[
            KafkaPrometheusMiddleware(registry=metrics.registry, app_name="contact-service"),
            *(
                [KafkaTelemetryMiddleware(tracer_provider=trace.get_tracer_provider())]
                if tracing.enabled()
                else []
            ),
        ],
        acks="all",
        enable_idempotence=True,
        graceful_timeout=settings.shutdown_grace_seconds,
        client_id="contact-service",
        # FastStream's own log lines go through the service's handlers (text or JSON), and its
        # per-message "Received"/"Processed" lines at DEBUG: noise at INFO.
        logger=logging.getLogger("contact_service.faststream"),
        log_level=logging.DEBUG,
        description="Kafka cluster carrying contact commands, queries, lookups and events.",
    )


def make_directory(settings: Settings, db: Database, metrics: Metrics) -> KafkaDirectoryFeed:
    feed = KafkaDirectoryFeed(
        directory=CallerDirectory(),
        db=db,
        client_options=settings.kafka_options(),
        topic=settings.topic(topics.EVENTS),
        max_contacts=settings.lookup_directory_max_contacts,
        wait_seconds=settings.lookup_directory_wait_ms / 1000,
    )
    metrics.watch_directory(
        contacts=lambda: feed.directory.active,
        ready=lambda: feed.ready,
        load_seconds=lambda: feed.load_seconds or 0.0,
        answers=lambda: dict(feed.stats),
    )
    return feed


def make_services(
    settings: Settings, db: Database, *, events: KafkaPublisher, directory: KafkaDirectoryFeed | None
) -> Services:
    return Services(
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


@dataclass(frozen=True)
class Messaging:
    """What every subscriber shares: metrics, the replier, dead letters and the failure policy."""

    metrics: Metrics
    replier: Replier
    dead_letters: DeadLetters
    policy: FailurePolicy

    @classmethod
    def make(cls, settings: Settings, metrics: Metrics) -> "Messaging":
        replier = Replier(client_options=settings.kafka_options(), metrics=metrics)
        parked = DeadLetters(
            client_options=settings.kafka_options(),
            topic=settings.topic(topics.DEAD_LETTERS),
            groups=settings.groups(),
            metrics=metrics,
        )
        policy = FailurePolicy(
            replier=replier,
            dead_letters=parked,
            backoff_max=settings.retry_backoff_max_seconds,
            max_attempts=settings.max_delivery_attempts,
        )
        return cls(metrics, replier, parked, policy)


def include_routers(
    router: KafkaRouter,
    settings: Settings,
    svc: Services,
    wiring: Messaging,
    *,
    sync_results: KafkaPublisher,
) -> lookups.Answers:
    """One router per entry point, each under the failure policy; returns the lookup answerer,
    which the shutdown drains."""
    replier, dead_letters = wiring.replier, wiring.dead_letters
    batches = commands.Commands(
        svc=svc,
        replier=replier,
        dead_letters=dead_letters,
        max_attempts=settings.max_delivery_attempts,
        backoff_max=settings.retry_backoff_max_seconds,
    )
    answers = lookups.Answers(
        limit=settings.lookup_workers, svc=svc, replier=replier, dead_letters=dead_letters
    )
    on_commands, on_queries, on_lookups, on_sync = (
        KafkaRouter(middlewares=[wiring.policy], parser=parser)
        for parser in (None, tolerant_parser, None, None)
    )
    commands.build_router(settings=settings, router=on_commands, commands=batches, replier=replier)
    queries.build_router(settings=settings, router=on_queries, svc=svc, replier=replier)
    lookups.build_router(settings=settings, router=on_lookups, answers=answers)
    crm_sync.build_router(
        settings=settings,
        router=on_sync,
        svc=svc,
        dead_letters=dead_letters,
        results=sync_results,
        metrics=wiring.metrics,
    )
    for part in (on_commands, on_queries, on_lookups, on_sync):
        router.include_router(part)
    return answers


def make_health(
    settings: Settings,
    broker: KafkaBroker,
    mongo: AsyncMongoClient[dict[str, Any]],
    metrics: Metrics,
) -> HealthServer:
    async def store_ready() -> bool:
        await mongo.admin.command("ping")
        return True

    async def broker_ready() -> bool:
        return await broker.ping(timeout=2)

    return HealthServer(
        host=settings.health_host,
        port=settings.health_port,
        checks={"broker": broker_ready, "store": store_ready},
        registry=metrics.registry,
    )


async def until_answered(what: str, step: Callable[[], Awaitable[None]], *, wait: float) -> None:
    """``step``, tried again while ``what`` cannot be reached, for up to ``wait`` seconds: a service
    started with (or during a restart of) its broker or store waits for them instead of exiting."""
    deadline = asyncio.get_running_loop().time() + wait
    delay = 0.5
    while True:
        try:
            return await step()
        except (KafkaConnectionError, ConnectionFailure) as exc:
            if asyncio.get_running_loop().time() + delay > deadline:
                raise
            log.warning("waiting for %s: %s", what, exc)
            await asyncio.sleep(delay)
            delay = min(delay * 2, 5.0)


@dataclass
class Lifecycle:
    """Start-up and shutdown, in FastStream's four hooks."""

    settings: Settings
    db: Database
    mongo: AsyncMongoClient[dict[str, Any]]
    wiring: Messaging
    directory: KafkaDirectoryFeed | None
    health: HealthServer
    answers: lookups.Answers
    chores: "list[asyncio.Task[None]]" = field(default_factory=list)
    """Background work for the process's lifetime: log pruning, lag sampling."""

    async def on_startup(self) -> None:
        await check_kafka_access(self.settings)
        wait = self.settings.startup_wait_seconds
        await until_answered("the store", lambda: ensure_schema(self.db), wait=wait)
        await until_answered("Kafka", lambda: ensure_topics(self.settings), wait=wait)
        await self.wiring.replier.start()
        await self.wiring.dead_letters.start()
        if self.directory is not None:
            await self.directory.start()
        retention = timedelta(days=self.settings.command_log_retention_days)
        lag = self.wiring.metrics.consumer_lag
        self.chores = [
            asyncio.create_task(MongoCommandLog(self.db).prune_forever(retention=retention)),
            asyncio.create_task(
                sample_lag_forever(
                    client_options=self.settings.kafka_options(),
                    groups=self.settings.groups(),
                    report=lambda group, topic, partition, n: lag.labels(group, topic, str(partition)).set(n),
                )
            ),
        ]

    async def after_startup(self) -> None:
        # What start-up built lives as long as the process: out of the collector's sight, a full
        # collection no longer walks it (a stall for every lookup in flight).
        gc.freeze()
        # Started only once the subscribers run, so "ready" means messages are being consumed.
        await self.health.start()
        log.info(
            "contact-service ready; health on http://%s:%d/readyz",
            self.settings.health_host,
            self.health.port,
        )

    async def on_shutdown(self) -> None:
        await self.health.stop()
        for chore in self.chores:
            chore.cancel()
        await asyncio.gather(*self.chores, return_exceptions=True)  # their clients closed, too

    async def after_shutdown(self) -> None:
        await self.answers.drain()  # the subscribers have stopped: answer what was taken, then close
        if self.directory is not None:
            await self.directory.stop()
        await self.wiring.dead_letters.stop()
        await self.wiring.replier.stop()
        await self.mongo.close()
        gc.unfreeze()  # what was frozen may be garbage now (a process running the app again: tests)
