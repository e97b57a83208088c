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
