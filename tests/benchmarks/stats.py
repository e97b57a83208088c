"""Summaries of latency samples and rates: percentiles, throughput, ratios against targets."""

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

Json = dict[str, Any]
"""A part of a benchmark's JSON report."""


def percentile(ordered: Sequence[float], p: float) -> float:
    """Nearest rank: the smallest value with at least ``p`` percent of the values at or below it."""
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def latency_ms(seconds: Sequence[float]) -> Json:
    """p50 (median) and p99 (nearest rank) of latencies in seconds, in milliseconds."""
    ordered = sorted(seconds)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(percentile(ordered, 99) * 1000, 2),
    }


def throughput(count: int, seconds: float) -> Json:
    return {"count": count, "seconds": round(seconds, 3), "per_second": round(count / seconds, 1)}


def ratio(a: float | None, b: float | None, digits: int = 3) -> float | None:
    return None if a is None or not b else round(a / b, digits)


def at_most(value: float | None, target: float) -> bool:
    return value is not None and value <= target


def added(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def label(value: float) -> str:
    """A number as a JSON key: 200.0 -> "200"."""
    return f"{value:g}"


def _ms(x: float) -> float | None:
    return None if math.isnan(x) else round(x, 3)


@dataclass
class Run:
    """One measured open-loop run: latencies (ms) of the successful calls and what went wrong with
    the rest."""

    rate: float
    seconds: float
    sent: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    timeouts: int = 0
    errors: int = 0
    wrong: int = 0
    max_send_lag_ms: float = 0.0
    elapsed: float = 0.0

    @classmethod
    def pooled(cls, runs: Sequence["Run"]) -> "Run":
        """Several runs at one rate as one: their calls together."""
        return cls(
            rate=runs[0].rate,
            seconds=sum(r.seconds for r in runs),
            sent=sum(r.sent for r in runs),
            latencies_ms=[x for r in runs for x in r.latencies_ms],
            timeouts=sum(r.timeouts for r in runs),
            errors=sum(r.errors for r in runs),
            wrong=sum(r.wrong for r in runs),
            max_send_lag_ms=max(r.max_send_lag_ms for r in runs),
            elapsed=sum(r.elapsed for r in runs),
        )

    def summary(self) -> Json:
        ordered = sorted(self.latencies_ms)
        return {
            "sent": self.sent,
            "count": len(ordered),
            "errors": self.timeouts + self.errors + self.wrong,
            "timeouts": self.timeouts,
            "failed": self.errors,
            "wrong": self.wrong,
            "p50_ms": _ms(percentile(ordered, 50)),
            "p90_ms": _ms(percentile(ordered, 90)),
            "p99_ms": _ms(percentile(ordered, 99)),
            "max_ms": _ms(ordered[-1] if ordered else math.nan),
            "mean_ms": _ms(statistics.fmean(ordered) if ordered else math.nan),
            "achieved_rate": round(len(ordered) / self.elapsed, 1) if self.elapsed else None,
            "max_send_lag_ms": round(self.max_send_lag_ms, 3),
        }

    def brief(self) -> Json:
        """The summary's count, errors, p50 and p99 alone."""
        summary = self.summary()
        return {k: summary[k] for k in ("count", "errors", "p50_ms", "p99_ms")}
