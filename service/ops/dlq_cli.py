"""``contact-service ops dlq``: list, show and redrive dead letters."""

import json
from datetime import UTC, datetime
from typing import Annotated, Any

import typer
from aiokafka import AIOKafkaProducer
from rich.table import Table

from contracts import topics
from service.config import Settings
from service.ops import dead_letters as dl
from service.ops.console import DryRun, JsonFlag, connected, emit, err, progress, run
from service.ops.kafka import Cluster

dlq_app = typer.Typer(help="Dead letters: list, show, redrive.", no_args_is_help=True)


ReasonOpt = Annotated[str | None, typer.Option("--reason", help="Only this reason (an ErrorCode).")]
SourceOpt = Annotated[str | None, typer.Option("--source-topic", help="Only from topics containing this.")]
SinceOpt = Annotated[datetime | None, typer.Option("--since", help="Dead-lettered at or after (UTC).")]
UntilOpt = Annotated[datetime | None, typer.Option("--until", help="Dead-lettered at or before (UTC).")]


def _filter(
    reason: str | None, source: str | None, since: datetime | None, until: datetime | None
) -> dl.Filter:
    def utc(value: datetime | None) -> datetime | None:
        return None if value is None else value if value.tzinfo else value.replace(tzinfo=UTC)

    return dl.Filter(reason, source, utc(since), utc(until))


@dlq_app.command("list")
def dlq_list(
    reason: ReasonOpt = None,
    source_topic: SourceOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    as_json: JsonFlag = False,
) -> None:
    """Dead letters, oldest first, with their reason and origin."""
    letters = run(_letters(Settings(), _filter(reason, source_topic, since, until)))
    table = Table(title=f"dead letters ({len(letters)})")
    for column in ("id", "at", "reason", "source", "group", "attempts", "message"):
        table.add_column(column, overflow="fold")
    for letter in letters:
        s = letter.summary()
        table.add_row(
            s["id"], s["at"], s["reason"], s["source"], s["group"], str(s["attempts"]), s["message"][:80]
        )
    emit(as_json, [letter.summary() for letter in letters], table)


async def _letters(settings: Settings, keep: dl.Filter) -> list[dl.DeadLetter]:
    async with Cluster(settings) as cluster:
        return [letter async for letter in dl.dead_letters(cluster, keep)]


@dlq_app.command("show")
def dlq_show(
    letter_id: Annotated[str, typer.Argument(help="partition:offset, as `dlq list` shows.")],
) -> None:
    """One dead letter whole: reason, origin, key, headers and value."""
    found = [letter for letter in run(_letters(Settings(), dl.Filter())) if letter.id == letter_id]
    if not found:
        err.print(f"no dead letter {letter_id}")
        raise typer.Exit(1)
    letter = found[0]
    document = {
        **letter.summary(),
        "key": None if letter.key is None else letter.key.decode("utf-8", "replace"),
        "headers": {k: v.decode("utf-8", "backslashreplace") for k, v in letter.headers},
        "value": letter.value.decode("utf-8", "replace"),
    }
    print(json.dumps(document, indent=2))


@dlq_app.command("redrive")
def dlq_redrive(
    reason: ReasonOpt = None,
    source_topic: SourceOpt = None,
    since: SinceOpt = None,
    until: UntilOpt = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Put dead letters back on the topic they came from (key, value, headers as they were).

    Each one is recorded: a second redrive sends nothing again. Bad input (malformed, invalid, unknown
    type) would be refused again as it is: it is left alone unless its --reason is named.
    """
    counts = run(_redrive(Settings(), _filter(reason, source_topic, since, until), dry_run=dry_run))
    table = Table(title="redrive" + (" (dry run: nothing sent)" if dry_run else ""))
    for column in ("matched", "sent", "already redriven", "bad input (left)", "no source topic"):
        table.add_column(column, justify="right")
    table.add_row(*(str(counts[k]) for k in ("matched", "sent", "already", "bad_input", "unroutable")))
    emit(as_json, {"dry_run": dry_run, **counts}, table)


BAD_INPUT = frozenset({"MALFORMED_MESSAGE", "INVALID_ARGUMENT", "UNKNOWN_MESSAGE_TYPE"})
"""Reasons a message would be refused again as it is: redriven only when asked for by --reason."""


async def _redrive(settings: Settings, keep: dl.Filter, *, dry_run: bool) -> dict[str, Any]:
    counts: dict[str, Any] = {"matched": 0, "sent": 0, "already": 0, "unroutable": 0, "bad_input": 0}
    counts["by_topic"] = {}
    async with connected(settings) as (cluster, db):
        letters = [letter async for letter in dl.dead_letters(cluster, keep)]
        redrives = dl.Redrives(db, settings.topic(topics.DEAD_LETTERS))
        wanted = []
        for letter in letters:
            counts["matched"] += 1
            if keep.reason is None and letter.reason in BAD_INPUT:
                counts["bad_input"] += 1
            elif not letter.source_topic:
                counts["unroutable"] += 1
            elif await redrives.done(letter):
                counts["already"] += 1
            else:
                wanted.append(letter)
        err.print(
            f"{'would redrive' if dry_run else 'redriving'} {len(wanted)} of {len(letters)} dead letters "
            f"({counts['already']} redriven before; {counts['bad_input']} bad input left alone, "
            "name its --reason to send it)"
        )
        if not dry_run:
            await _send(wanted, settings, redrives, counts)
        else:
            counts["sent"] = len(wanted)
            for letter in wanted:
                counts["by_topic"][letter.source_topic] = counts["by_topic"].get(letter.source_topic, 0) + 1
    return counts


async def _send(
    wanted: list[dl.DeadLetter], settings: Settings, redrives: dl.Redrives, counts: dict[str, Any]
) -> None:
    producer = AIOKafkaProducer(**settings.kafka_options(), acks="all", enable_idempotence=True)
    await producer.start()
    try:
        with progress() as bar:
            task = bar.add_task("redriving", total=len(wanted))
            for letter in wanted:
                if await dl.redrive(letter, producer=producer, redrives=redrives):
                    counts["sent"] += 1
                    counts["by_topic"][letter.source_topic] = (
                        counts["by_topic"].get(letter.source_topic, 0) + 1
                    )
                else:
                    counts["already"] += 1
                bar.advance(task)
    finally:
        await producer.stop()
