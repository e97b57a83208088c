"""Entry point: ``contact-service`` runs the service, ``contact-service ops ...`` operates it
(or ``faststream run service.main:create_app --factory``)."""

import asyncio
import sys

import typer
import uvloop
from pydantic import ValidationError

from service import tracing
from service.adapters.kafka_setup import StartupError
from service.bootstrap import build
from service.config import Settings
from service.entrypoints import logs
from service.ops.cli import app as ops


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"  {'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}" for e in exc.errors()]
        sys.exit("contact-service: invalid settings:\n" + "\n".join(lines))


def configure_logging(settings: Settings) -> None:
    logs.configure(level=settings.log_level, fmt=settings.log_format)


def create_app():  # type: ignore[no-untyped-def]
    """App factory for ``faststream run service.main:create_app --factory``."""
    settings = load_settings()
    configure_logging(settings)
    tracing.configure_from_environment()
    return build(settings).app


def run() -> None:
    """Run until SIGINT/SIGTERM; FastStream drains in-flight messages before stopping."""
    settings = load_settings()
    configure_logging(settings)
    tracing.configure_from_environment()
    app = build(settings).app
    # uvloop is an option, not the default: less CPU per round trip, but no lower lookup latency
    # here (docs/measurements.md).
    runner = uvloop.run if settings.event_loop == "uvloop" else asyncio.run
    try:
        runner(app.run())
    except StartupError as exc:
        sys.exit(f"contact-service: {exc}")


cli = typer.Typer(
    help="The contact service. Without a command: run it (settings from the environment).",
    add_completion=False,
    pretty_exceptions_enable=False,
)
cli.add_typer(ops, name="ops")


@cli.callback(invoke_without_command=True)
def _default(context: typer.Context) -> None:
    if context.invoked_subcommand is None:
        run()


if __name__ == "__main__":
    cli()
