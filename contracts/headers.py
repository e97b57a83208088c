"""Header conventions.

Request/reply follows FastStream's convention (``reply_to`` + ``correlation_id``). A request without
``reply_to`` is still processed; only the reply is skipped. Spring Kafka's ReplyingKafkaTemplate
convention is understood on the lookup topic (see ``SPRING_*``).
"""

from typing import Final

REPLY_TO: Final = "reply_to"
CORRELATION_ID: Final = "correlation_id"

SPRING_REPLY_TOPIC: Final = "kafka_replyTopic"
SPRING_REPLY_PARTITION: Final = "kafka_replyPartition"
"""4-byte big-endian integer."""
SPRING_CORRELATION_ID: Final = "kafka_correlationId"
"""Raw bytes, echoed unchanged (Spring's default is a 16-byte binary UUID)."""

DEADLINE: Final = "deadline"
"""Optional: absolute deadline as epoch milliseconds (ASCII). A request past it is not answered."""

DLQ_REASON: Final = "dlq_reason"
"""Dead-letter headers: reason code (see ``errors.ErrorCode``) ..."""
DLQ_MESSAGE: Final = "dlq_message"
"""... human-readable explanation ..."""
DLQ_FIELD: Final = "dlq_field"
"""... the offending field, when one is known ..."""
DLQ_SOURCE_TOPIC: Final = "dlq_source_topic"
DLQ_SOURCE_PARTITION: Final = "dlq_source_partition"
DLQ_SOURCE_OFFSET: Final = "dlq_source_offset"
"""... and where the original message came from. The value is the original bytes, unchanged."""

# Spring Kafka's dead-letter headers (DeadLetterPublishingRecoverer), on every dead letter beside
# the dlq_* ones: tools that know Spring's dead-letter topics read these. Integers are big-endian
# binary as Spring writes them; text is UTF-8.
DLT_ORIGINAL_TOPIC: Final = "kafka_dlt-original-topic"
DLT_ORIGINAL_PARTITION: Final = "kafka_dlt-original-partition"
"""4-byte big-endian integer."""
DLT_ORIGINAL_OFFSET: Final = "kafka_dlt-original-offset"
"""8-byte big-endian integer."""
DLT_ORIGINAL_TIMESTAMP: Final = "kafka_dlt-original-timestamp"
"""8-byte big-endian integer: the original record's timestamp, epoch milliseconds."""
DLT_ORIGINAL_TIMESTAMP_TYPE: Final = "kafka_dlt-original-timestamp-type"
DLT_ORIGINAL_CONSUMER_GROUP: Final = "kafka_dlt-original-consumer-group"
DLT_EXCEPTION_FQCN: Final = "kafka_dlt-exception-fqcn"
DLT_EXCEPTION_MESSAGE: Final = "kafka_dlt-exception-message"
DELIVERY_ATTEMPT: Final = "kafka_deliveryAttempt"
"""4-byte big-endian integer: how many times the message was tried before it was dead-lettered."""

DEAD_LETTER_HEADERS: Final = frozenset(
    {
        DLQ_REASON,
        DLQ_MESSAGE,
        DLQ_FIELD,
        DLQ_SOURCE_TOPIC,
        DLQ_SOURCE_PARTITION,
        DLQ_SOURCE_OFFSET,
        DLT_ORIGINAL_TOPIC,
        DLT_ORIGINAL_PARTITION,
        DLT_ORIGINAL_OFFSET,
        DLT_ORIGINAL_TIMESTAMP,
        DLT_ORIGINAL_TIMESTAMP_TYPE,
        DLT_ORIGINAL_CONSUMER_GROUP,
        DLT_EXCEPTION_FQCN,
        DLT_EXCEPTION_MESSAGE,
        DELIVERY_ATTEMPT,
    }
)
"""What a dead letter adds; every other header is the original message's, byte for byte."""
