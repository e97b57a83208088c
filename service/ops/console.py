"""What every ``contact-service ops`` verb shares: output for people (rich) and scripts (JSON),
progress bars, and the connections to the broker and the store."""

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.adapters.mongo import make_client
from service.config import CONSUMED, Settings
from service.ops import store
from service.ops.kafka import Cluster

out = Console()
err = Console(stderr=True)
T = TypeVar("T")

JsonFlag = Annotated[bool, typer.Option("--json", help="One JSON document on stdout, for scripts.")]
DryRun = Annotated[bool, typer.Option("--dry-run", help="Say what would be done; change nothing.")]
TOPICS = {suffix: topic for topic, suffix in CONSUMED.items()}


def run(work: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(work)


def emit(as_json: bool, document: Any, table: Table | None = None) -> None:
    if as_json:
        print(json.dumps(document, indent=2, default=str))
    elif table is not None:
        out.print(table)


def progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=False,
    )


@asynccontextmanager
async def connected(settings: Settings) -> AsyncIterator[tuple[Cluster, store.Database]]:
    mongo = make_client(settings.mongodb_url)
    try:
        async with Cluster(settings) as cluster:
            yield cluster, mongo[settings.mongodb_database]
    finally:
        await mongo.close()
