"""What the service publishes besides replies: change events, dead letters and sync results."""

from dataclasses import dataclass

from faststream.kafka import KafkaRouter

from contracts import topics
from contracts.events import ContactEvent
from contracts.sync import SyncResult
from service.compat import KafkaPublisher
from service.config import Settings

EVENTS = """\
contact.created / contact.updated / contact.deleted: the whole contact after the change, \
changed_fields, a per-contact version, the cause (command id and type) and an event_id to dedupe \
on. Keyed by contact id; headers event_type and event_id."""

DEAD_LETTERS = """\
Messages that could not be parsed or applied: key, value and headers unchanged, plus the reason in \
headers dlq_reason (an ErrorCode), dlq_message, dlq_field, dlq_source_topic/partition/offset, and \
Spring Kafka's kafka_dlt-original-topic/partition/offset/timestamp/consumer-group, \
kafka_dlt-exception-fqcn/message and kafka_deliveryAttempt."""

SYNC_RESULTS = """\
One SyncResult per CRM sync item that could not be applied (for example ADDRESS_ALREADY_EXISTS \
when a synced number belongs to another contact), keyed like the sync message, with the source \
topic/partition/offset."""


@dataclass(frozen=True)
class Publishers:
    events: KafkaPublisher
    dead_letters: KafkaPublisher
    sync_results: KafkaPublisher


def declare(router: KafkaRouter, settings: Settings) -> Publishers:
    def publisher(topic: str, title: str, schema: object, description: str) -> KafkaPublisher:
        declared: KafkaPublisher = router.publisher(
            settings.topic(topic), title=title, schema=schema, description=description
        )
        return declared

    return Publishers(
        events=publisher(topics.EVENTS, "contact-events", ContactEvent, EVENTS),
        dead_letters=publisher(topics.DEAD_LETTERS, "contact-dead-letters", bytes, DEAD_LETTERS),
        sync_results=publisher(topics.SYNC_RESULTS, "crm-sync-results", SyncResult, SYNC_RESULTS),
    )
