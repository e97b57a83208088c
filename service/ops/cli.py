"""``contact-service ops``: status, replay, dead letters, re-emit, audit — configured like the service.

Every verb that changes something prints what it will do first, has ``--dry-run``, and is safe to
run twice. ``--json`` prints one JSON document on stdout for scripts; people get tables, and
progress bars on stderr.
"""

import asyncio
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer
from pymongo.errors import PyMongoError
from rich.table import Table

from contracts import topics
from service.adapters.mongo import make_client
from service.config import Settings
from service.ops import dead_letters as dl
from service.ops import reemit as re_emit
from service.ops import store
from service.ops.console import TOPICS, DryRun, JsonFlag, connected, emit, err, out, progress, run
from service.ops.dlq_cli import dlq_app
from service.ops.kafka import Cluster, GroupOffsets, Target

app = typer.Typer(
    help="Operate the contact service: replay, redrive, re-emit, audit.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(dlq_app, name="dlq")

# --- status ---


@app.command()
def status(as_json: JsonFlag = False) -> None:
    """Consumer groups (offsets, lag, members), dead letters by reason, the command log's size."""
    settings = Settings()
    report = run(_status(settings))
    emit(as_json, report, _status_tables(report))
    if not as_json:
        out.print(_reasons_table(report["dead_letters"]))
        out.print(_log_table(report["command_log"]))


async def _status(settings: Settings) -> dict[str, Any]:
    async with connected(settings) as (cluster, db):
        groups = [await cluster.offsets(group, topic) for topic, group in settings.groups().items()]
        letters = [letter async for letter in dl.dead_letters(cluster, dl.Filter())]
        retention = timedelta(days=settings.command_log_retention_days)
        try:  # the store may be what is down: the broker's half still answers
            redrives = dl.Redrives(db, settings.topic(topics.DEAD_LETTERS))
            done = [await redrives.done(letter) for letter in letters]
            log = await store.log_size(db, retention=retention)
        except PyMongoError as exc:
            done, log = [False] * len(letters), {"unavailable": f"store unreachable: {type(exc).__name__}"}
    reasons: dict[str, dict[str, int]] = {}
    for letter, redriven in zip(letters, done, strict=True):
        counts = reasons.setdefault(letter.reason, {"count": 0, "redriven": 0})
        counts["count"] += 1
        counts["redriven"] += redriven
    return {"groups": [_group_json(g) for g in groups], "dead_letters": reasons, "command_log": log}


def _group_json(g: GroupOffsets) -> dict[str, Any]:
    return {
        "group": g.group,
        "topic": g.topic,
        "state": g.state,
        "members": g.members,
        "lag": g.lag,
        "partitions": [
            {"partition": p.partition, "start": p.start, "committed": p.committed, "end": p.end, "lag": p.lag}
            for p in g.partitions
        ],
    }


def _status_tables(report: dict[str, Any]) -> Table:
    table = Table(title="consumer groups")
    for column in ("group", "topic", "state", "members", "partition", "committed", "end", "lag"):
        table.add_column(
            column, justify="right" if column in {"members", "committed", "end", "lag"} else "left"
        )
    for g in report["groups"]:
        if not g["partitions"]:
            table.add_row(g["group"], g["topic"], g["state"], str(g["members"]), "(no topic yet)", "", "", "")
        for i, p in enumerate(g["partitions"]):
            first = i == 0
            table.add_row(
                g["group"] if first else "",
                g["topic"] if first else "",
                g["state"] if first else "",
                str(g["members"]) if first else "",
                str(p["partition"]),
                "-" if p["committed"] is None else str(p["committed"]),
                str(p["end"]),
                str(p["lag"]),
            )
    return table


def _reasons_table(reasons: dict[str, dict[str, int]]) -> Table:
    table = Table(title="dead letters by reason")
    table.add_column("reason")
    table.add_column("count", justify="right")
    table.add_column("redriven", justify="right")
    for reason, counts in sorted(reasons.items()):
        table.add_row(reason or "(none)", str(counts["count"]), str(counts["redriven"]))
    return table


def _log_table(log: dict[str, Any]) -> Table:
    table = Table(title="command log")
    if "unavailable" in log:
        table.add_column("unavailable")
        table.add_row(log["unavailable"])
        return table
    for column in ("entries", "oldest", "oldest age (h)", "retention (days)"):
        table.add_column(column)
    table.add_row(
        str(log["entries"]), str(log["oldest"]), str(log["oldest_age_hours"]), str(log["retention_days"])
    )
    return table


# --- replay ---


@app.command()
def replay(
    topic: Annotated[list[str], typer.Option(help=f"Topic to replay: {', '.join(TOPICS)} (repeatable).")],
    earliest: Annotated[bool, typer.Option("--earliest", help="From the earliest kept message.")] = False,
    to_datetime: Annotated[
        datetime | None, typer.Option("--to-datetime", help="From the first message at or after this time.")
    ] = None,
    to_offset: Annotated[
        int | None, typer.Option("--to-offset", help="From this offset, every partition.")
    ] = None,
    shift_by: Annotated[
        int | None, typer.Option("--shift-by", help="Move the committed offsets by N.")
    ] = None,
    wait: Annotated[
        float, typer.Option(help="Seconds to wait for the group to have no live members (stop the service).")
    ] = 0.0,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Move the service's consumer group on TOPIC so that its messages are processed again.

    Refuses while the group has live members: stop the service first (or pass --wait while it stops).
    """
    target = _target(earliest, to_datetime, to_offset, shift_by)
    unknown = [t for t in topic if t not in TOPICS]
    if unknown:
        raise typer.BadParameter(
            f"unknown topic {unknown}; choose from {', '.join(TOPICS)}", param_hint="--topic"
        )
    settings = Settings()
    plans = run(_replay(settings, [TOPICS[t] for t in topic], target, wait=wait, dry_run=dry_run))
    refused = any(plan.get("refused") for plan in plans)
    table = _replay_table(plans, refused=refused, dry_run=dry_run)
    emit(as_json, {"dry_run": dry_run, "replays": plans}, table)
    if refused:
        for plan in plans:
            if plan.get("refused"):
                err.print(f"[red]refused[/red] {plan['group']}: {plan['refused']}")
        raise typer.Exit(2)


def _replay_table(plans: list[dict[str, Any]], *, refused: bool, dry_run: bool) -> Table:
    title = (
        "replay refused: nothing moved"
        if refused
        else "replay" + (" (dry run: nothing moved)" if dry_run else "")
    )
    table = Table(title=title)
    for column in ("group", "topic", "partition", "from", "to", "messages again"):
        table.add_column(column)
    for plan in plans:
        for p in plan["partitions"]:
            table.add_row(
                plan["group"],
                plan["topic"],
                str(p["partition"]),
                str(p["from"]),
                str(p["to"]),
                str(p["again"]),
            )
    return table


def _target(earliest: bool, when: datetime | None, offset: int | None, shift: int | None) -> Target:
    chosen: list[Target] = []
    if earliest:
        chosen.append(("earliest", None))
    if when is not None:
        chosen.append(("datetime", when if when.tzinfo else when.replace(tzinfo=UTC)))
    if offset is not None:
        chosen.append(("offset", offset))
    if shift is not None:
        chosen.append(("shift", shift))
    if len(chosen) != 1:
        raise typer.BadParameter("give exactly one of --earliest, --to-datetime, --to-offset, --shift-by")
    return chosen[0]


async def _replay(
    settings: Settings, wanted: list[str], target: Target, *, wait: float, dry_run: bool
) -> list[dict[str, Any]]:
    plans: list[tuple[dict[str, Any], dict[int, int]]] = []
    async with Cluster(settings) as cluster:
        for name in wanted:
            topic, group = settings.topic(name), settings.group(name)
            now = await _when_empty(cluster, group, topic, wait)
            moved = await cluster.targets(now, target)
            plan: dict[str, Any] = {"group": group, "topic": topic, "partitions": []}
            for p in now.partitions:
                start = p.start if p.committed is None else p.committed
                again = max(0, start - moved[p.partition])
                plan["partitions"].append(
                    {"partition": p.partition, "from": p.committed, "to": moved[p.partition], "again": again}
                )
            plan["messages_again"] = sum(p["again"] for p in plan["partitions"])
            if now.members:
                plan["refused"] = f"{now.members} live member(s): stop the service first, or pass --wait"
            plans.append((plan, moved))
        for plan, _ in plans:
            verb = "refused" if plan.get("refused") else "would move" if dry_run else "moving"
            err.print(f"{verb} {plan['group']} on {plan['topic']}: {plan['messages_again']} messages again")
        for plan, moved in plans:
            if not dry_run and not plan.get("refused") and moved:
                await cluster.commit(plan["group"], plan["topic"], moved)
                plan["moved"] = True
    return [plan for plan, _ in plans]


async def _when_empty(cluster: Cluster, group: str, topic: str, wait: float) -> GroupOffsets:
    deadline = time.monotonic() + wait
    while True:
        now = await cluster.offsets(group, topic)
        if now.members == 0 or time.monotonic() >= deadline:
            return now
        await asyncio.sleep(1.0)


# --- re-emit ---


@app.command()
def reemit(
    customer: Annotated[str | None, typer.Option(help="Only this customer's contacts.")] = None,
    dry_run: DryRun = False,
    as_json: JsonFlag = False,
) -> None:
    """Publish every contact's current state on the events topic (contact.updated, or contact.deleted),
    with its current version and an event_id fixed per (contact, version): consumers apply it once."""
    counts = run(re_emit.run(Settings(), customer_id=customer, dry_run=dry_run, progress=progress))
    table = Table(title="re-emit" + (" (dry run: nothing published)" if dry_run else ""))
    for column in ("contacts", "published", "deleted among them", "topic"):
        table.add_column(column)
    table.add_row(str(counts["contacts"]), str(counts["published"]), str(counts["deleted"]), counts["topic"])
    emit(as_json, {"dry_run": dry_run, **counts}, table)


# --- audit ---


@app.command()
def check(
    repair: Annotated[
        bool, typer.Option("--repair", help="Release orphan claims (the safe subset).")
    ] = False,
    events: Annotated[bool, typer.Option(help="Also compare the events topic with the store.")] = True,
    as_json: JsonFlag = False,
) -> None:
    """Audit store, address claims and events; exit 1 when anything is left to fix."""
    report = run(_check(Settings(), repair=repair, events=events))
    table = Table(title=f"findings ({len(report['findings'])})")
    for column in ("kind", "customer", "detail", "repaired"):
        table.add_column(column, overflow="fold")
    repaired = {json.dumps(f, sort_keys=True) for f in report["repaired"]}
    for f in report["findings"]:
        detail = {k: v for k, v in f.items() if k not in {"kind", "customer_id", "repairable"}}
        done = "yes" if json.dumps(f, sort_keys=True) in repaired else ""
        table.add_row(f["kind"], f["customer_id"], json.dumps(detail), done)
    emit(as_json, report, table)
    if report["left"]:
        raise typer.Exit(1)


async def _check(settings: Settings, *, repair: bool, events: bool) -> dict[str, Any]:
    async with connected(settings) as (cluster, db):
        audit = await store.Audit.read(db)
        grace = timedelta(seconds=settings.claim_grace_seconds)
        findings = audit.store_findings(grace=grace, now=datetime.now(UTC))
        if events:
            newest, complete = await _newest_events(cluster, settings.topic(topics.EVENTS))
            findings += audit.event_findings(newest, complete=complete)
        fixed = await store.repair(db, findings) if repair else []
    left = [f for f in findings if f not in fixed]
    return {
        "contacts": len(audit.versions),
        "claims": len(audit.claims),
        "findings": [f.to_json() for f in findings],
        "repaired": [f.to_json() for f in fixed],
        "left": len(left),
    }


async def _newest_events(cluster: Cluster, topic: str) -> tuple[dict[str, int], bool]:
    newest: dict[str, int] = {}
    async for record in cluster.read(topic):
        event = json.loads(record.value or b"{}")
        contact_id, version = event.get("contact_id"), event.get("version")
        if isinstance(contact_id, str) and isinstance(version, int):
            newest[contact_id] = max(version, newest.get(contact_id, 0))
    partitions = await cluster.partitions(topic)
    starts = await cluster.consumer.beginning_offsets(partitions)
    return newest, all(offset == 0 for offset in starts.values())


# --- dump and log ---


@app.command()
def dump(
    output: Annotated[Path | None, typer.Option("--out", help="File to write (default: stdout).")] = None,
) -> None:
    """Every document the service keeps, canonical JSON lines: equal stores give equal dumps."""
    settings = Settings()

    async def lines() -> list[str]:
        mongo = make_client(settings.mongodb_url)
        try:
            return [line async for line in store.canonical_dump(mongo[settings.mongodb_database])]
        finally:
            await mongo.close()

    text = "".join(line + "\n" for line in run(lines()))
    if output is None:
        sys.stdout.write(text)
    else:
        output.write_text(text)
    err.print(f"{text.count(chr(10))} documents")


@app.command("prune-log")
def prune_log(dry_run: DryRun = False, as_json: JsonFlag = False) -> None:
    """Forget commands older than COMMAND_LOG_RETENTION_DAYS now (the service also does so hourly)."""
    settings = Settings()

    async def prune() -> dict[str, Any]:
        mongo = make_client(settings.mongodb_url)
        try:
            retention = timedelta(days=settings.command_log_retention_days)
            return await store.prune_log(
                mongo[settings.mongodb_database], retention=retention, dry_run=dry_run
            )
        finally:
            await mongo.close()

    result = run(prune())
    table = Table(title="prune command log" + (" (dry run: nothing removed)" if dry_run else ""))
    for column in ("cutoff (older goes)", "entries older", "pruned"):
        table.add_column(column)
    table.add_row(result["before"], str(result["older"]), str(result["pruned"]))
    emit(as_json, result, table)
