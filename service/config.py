"""Settings from environment variables (pydantic-settings). A bad value stops start-up with a clear error."""

from typing import Any, Literal

import phonenumbers
from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from contracts import topics
from contracts.security import KafkaSecurity, Mechanism, Protocol


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="", case_sensitive=False, extra="ignore")

    kafka_bootstrap_servers: str = Field(
        "127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated."
    )
    kafka_security_protocol: Protocol = Field(
        "PLAINTEXT", description="PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL, for every Kafka client."
    )
    kafka_sasl_mechanism: Mechanism = Field("PLAIN", description="PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.")
    kafka_sasl_username: str = Field("", description="SASL user name.")
    kafka_sasl_password: SecretStr = Field(SecretStr(""), description="SASL password (never logged).")
    kafka_ssl_cafile: str | None = Field(None, description="PEM file of the CA that signed the brokers.")
    kafka_ssl_certfile: str | None = Field(None, description="PEM client certificate (mutual TLS).")
    kafka_ssl_keyfile: str | None = Field(None, description="PEM key of the client certificate.")
    mongodb_url: str = Field("mongodb://127.0.0.1:27017/", description="MongoDB connection string.")
    mongodb_database: str = Field("contacts", min_length=1, description="Database holding the collections.")
    consumer_group: str = Field("contact-service", min_length=1, description="Kafka consumer group id.")
    topic_prefix: str = Field(
        "", description="Prepended to every topic name (isolates environments and tests)."
    )
    topic_partitions: int = Field(3, ge=1, le=1000, description="Partitions for topics the service creates.")
    topic_replication_factor: int = Field(
        1, ge=1, description="Replication factor for topics the service creates."
    )
    default_region: str = Field(
        "US", description="Region assumed for phone numbers given without +country code."
    )
    claim_grace_seconds: float = Field(
        30.0, gt=0, description="How long an in-flight address claim is honoured."
    )
    retry_backoff_max_seconds: float = Field(
        5.0, gt=0, description="Longest pause between retries of a failing message."
    )
    max_delivery_attempts: int = Field(
        5,
        ge=1,
        description="Attempts before a message failing for an unknown reason is dead-lettered.",
    )
    lookup_workers: int = Field(
        16,
        ge=1,
        le=256,
        description="Lookups answered concurrently per instance, and the most taken per batch (read-only).",
    )
    lookup_directory: bool = Field(
        True,
        description=(
            "Answer lookups from an in-memory directory of contacts, loaded from the store at start-up "
            "and kept current from the contact-events topic; the store answers while it loads or lags."
        ),
    )
    lookup_directory_max_contacts: int = Field(
        1_000_000,
        ge=0,
        description="Contacts (all customers) the directory may hold; beyond it lookups read the store.",
    )
    lookup_directory_wait_ms: float = Field(
        50.0,
        gt=0,
        description="How long a lookup waits for the directory to catch up before reading the store.",
    )
    command_batch_size: int = Field(
        100,
        ge=1,
        le=10000,
        description=(
            "Commands taken per poll and applied as one batch: their reads done together, their "
            "events published and log entries written together."
        ),
    )
    kafka_max_poll_interval_ms: int = Field(
        300_000,
        ge=1_000,
        description=(
            "Kafka's max.poll.interval.ms for the command and CRM sync consumers. Work that runs "
            "longer keeps polling with its partitions paused, so it never loses its group membership."
        ),
    )
    kafka_rebalance_timeout_ms: int = Field(
        300_000,
        ge=1_000,
        description=(
            "How long a rebalance of the command and CRM sync groups waits for a member to finish "
            "the batch in hand and commit it, before the group drops that member."
        ),
    )
    sync_batch_size: int = Field(
        500, ge=1, le=10000, description="CRM sync messages consumed and written per batch."
    )
    sync_lanes: int = Field(
        2,
        ge=1,
        le=16,
        description="Groups of a sync batch applied concurrently: one's reads overlap another's writes.",
    )
    command_log_retention_days: float = Field(
        30.0,
        gt=0,
        description=(
            "How long the command log remembers a command (and so answers its redelivery or replay "
            "without applying it again). Keep it longer than the command topic's retention."
        ),
    )
    startup_wait_seconds: float = Field(
        120.0,
        ge=0,
        description=(
            "How long start-up keeps trying a broker or store that does not answer yet (started "
            "together, or restarting) before the service gives up and exits."
        ),
    )
    shutdown_grace_seconds: float = Field(
        25.0,
        ge=0,
        description=(
            "On SIGTERM, how long the batches in hand may run to their commit before they are "
            "cancelled and the instance leaves its groups (keep it under the orchestrator's grace "
            "period before SIGKILL)."
        ),
    )
    health_host: str = Field("127.0.0.1", description="Health/readiness HTTP listener address.")
    health_port: int = Field(
        8080, ge=0, le=65535, description="Health/readiness HTTP port (0: pick a free port)."
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    log_format: Literal["text", "json"] = Field(
        "text",
        description="text, or json: one JSON object a line with the message's topic, offset and trace id.",
    )
    event_loop: Literal["asyncio", "uvloop"] = Field(
        "asyncio",
        description="asyncio (the standard loop) or uvloop; uvloop did not lower lookup latency here.",
    )

    @field_validator("default_region")
    @classmethod
    def _known_region(cls, value: str) -> str:
        if value.upper() not in phonenumbers.SUPPORTED_REGIONS:
            raise ValueError(f"unknown region {value!r}: use an ISO 3166-1 alpha-2 code such as US or GB")
        return value.upper()

    @model_validator(mode="after")
    def _security_complete(self) -> "Settings":
        try:
            self.kafka_security  # noqa: B018 (validates the combination at start-up)
        except ValidationError as exc:
            raise ValueError(exc.errors()[0]["msg"].removeprefix("Value error, ")) from None
        return self

    @property
    def kafka_security(self) -> KafkaSecurity:
        return KafkaSecurity(
            protocol=self.kafka_security_protocol,
            sasl_mechanism=self.kafka_sasl_mechanism,
            username=self.kafka_sasl_username,
            password=self.kafka_sasl_password,
            ca_file=self.kafka_ssl_cafile,
            cert_file=self.kafka_ssl_certfile,
            key_file=self.kafka_ssl_keyfile,
        )

    def kafka_options(self) -> dict[str, Any]:
        """What every aiokafka client of the service is made with: the servers and the security."""
        return {"bootstrap_servers": self.kafka_bootstrap_servers, **self.kafka_security.client_options()}

    @property
    def poll_while_busy_seconds(self) -> float:
        """How often a consumer busy with long work polls (paused): well within the interval."""
        return self.kafka_max_poll_interval_ms / 4000

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"

    def all_topics(self) -> list[str]:
        return [self.topic(t) for t in topics.ALL]

    def group(self, topic: str) -> str:
        """The consumer group that reads ``topic`` (a name from ``contracts.topics``)."""
        return f"{self.consumer_group}.{CONSUMED[topic]}"

    def groups(self) -> dict[str, str]:
        """Every topic the service consumes (with its prefix), and the group that reads it."""
        return {self.topic(t): self.group(t) for t in CONSUMED}


CONSUMED = {
    topics.COMMANDS: "commands",
    topics.QUERIES: "queries",
    topics.LOOKUPS: "lookups",
    topics.CRM_SYNC: "crm-sync",
}
"""The topics the service consumes, each with its consumer group's suffix."""
