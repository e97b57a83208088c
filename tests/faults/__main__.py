"""``python -m tests.faults [--profile ci|full] [--out FILE]``: one run, its JSON on stdout; exit 1
when any invariant was violated."""

import asyncio
import json
import logging
from pathlib import Path
from typing import Annotated

import typer

from tests.faults.run import PROFILES, main

app = typer.Typer(add_completion=False)


@app.command()
def run(
    profile: Annotated[str, typer.Option(help=f"One of {', '.join(PROFILES)}.")] = "ci",
    seed: Annotated[int, typer.Option(help="Decides every message sent and every fault's target.")] = 1,
    out: Annotated[Path | None, typer.Option(help="Also write the JSON here.")] = None,
    keep_stack: Annotated[bool, typer.Option(help="Leave the suite's Kafka and store running.")] = False,
) -> None:
    if profile not in PROFILES:
        raise typer.BadParameter(f"choose from {', '.join(PROFILES)}", param_hint="--profile")
    # A broker killed twenty times makes aiokafka log thousands of reconnects; the JSON is the report.
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    result = asyncio.run(main(PROFILES[profile], seed=seed, keep_stack=keep_stack))
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2) + "\n")
    raise typer.Exit(1 if result["invariants"]["total"] else 0)


app()
