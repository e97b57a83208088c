"""The service's own Prometheus metrics (prometheus_client), beside FastStream's per-topic ones.

Each application has a registry of its own (tests run several in one process); the health
listener serves it at /metrics.
"""

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import CounterMetricFamily, Metric
from prometheus_client.registry import Collector

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.lookup_seconds = Histogram(
            "contact_lookup_duration_seconds",
            "Lookup answer time in the service, by where the answer came from.",
            ["source"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.command_batch_seconds = Histogram(
            "contact_command_batch_duration_seconds",
            "Time to apply one poll's batch of commands.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.sync_batch_seconds = Histogram(
            "contact_sync_batch_duration_seconds",
            "Time to apply one poll's batch of CRM sync messages.",
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.sync_messages = Counter(
            "contact_sync_messages", "CRM sync messages, by outcome.", ["outcome"], registry=r
        )
        self.dead_letters = Counter(
            "contact_dead_letters", "Messages dead-lettered, by reason.", ["reason"], registry=r
        )
        self.replies = Counter("contact_replies", "Replies sent.", registry=r)
        self.expired = Counter(
            "contact_requests_expired",
            "Requests dropped past their deadline, by topic.",
            ["topic"],
            registry=r,
        )
        self.consumer_lag = Gauge(
            "contact_consumer_lag",
            "Messages not yet consumed, by consumer group, topic and partition (sampled).",
            ["group", "topic", "partition"],
            registry=r,
        )

    def sample(self, name: str, **labels: str) -> float:
        """The current value of one sample (0 when it was never set): for tests and benchmarks."""
        return self.registry.get_sample_value(name, labels) or 0.0

    def watch_directory(
        self, *, contacts: Callable[[], int], ready: Callable[[], bool], load_seconds: Callable[[], float],
        answers: Callable[[], dict[str, int]],
    ) -> None:  # fmt: skip
        """Gauges read from the caller directory at scrape time."""
        r = self.registry
        Gauge("contact_directory_contacts", "Contacts the caller directory holds.", registry=r).set_function(
            contacts
        )
        Gauge("contact_directory_ready", "1 once the directory is loaded.", registry=r).set_function(
            lambda: float(ready())
        )
        Gauge("contact_directory_load_seconds", "How long the last load took.", registry=r).set_function(
            load_seconds
        )
        r.register(_DirectoryAnswers(answers))


class _DirectoryAnswers(Collector):
    """The directory feed's own tallies (answers trusted, lookups it sent to the store, loads)."""

    def __init__(self, answers: Callable[[], dict[str, int]]) -> None:
        self._answers = answers

    def collect(self) -> Iterable[Metric]:
        family = CounterMetricFamily(
            "contact_directory_events", "Caller directory tallies, by kind.", labels=["kind"]
        )
        for kind, value in sorted(self._answers().items()):
            family.add_metric([kind], value)
        yield family
