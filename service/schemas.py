"""JSON Schemas of every message, one file per message, generated from the ``contracts`` models:
``python -m service.schemas`` (``python -m service.asyncapi`` writes them too).

The committed copies are docs/schemas/<topic>/*.json; tests/unit/test_schemas.py fails when they
drift, and deploy/contracts/gate.py compares them with the released ones in
docs/schemas/released/ (docs/contracts.md). Each file is a standalone JSON Schema (2020-12, its
definitions under ``$defs``) plus ``x-topic``, ``x-message`` and ``x-direction`` (``in``: the
service reads it, ``out``: the service writes it), which the gate judges changes by.
"""

import json
import shutil
import sys
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from service.catalogue import Direction, Topic, catalogue

ROOT = Path(__file__).resolve().parents[1] / "docs" / "schemas"
RELEASED = "released"
"""The released baseline, docs/schemas/released/<topic>/: never written by the generator."""
DIALECT = "https://json-schema.org/draft/2020-12/schema"

Mode = Literal["validation", "serialization"]


def mode(direction: Direction) -> Mode:
    """What the service accepts (``in``) or what it produces (``out``)."""
    return "validation" if direction == "in" else "serialization"


def _schema(
    topic: str, name: str, direction: Direction, model: type[BaseModel], summary: str = ""
) -> dict[str, Any]:
    schema = model.model_json_schema(by_alias=True, mode=mode(direction))
    head: dict[str, Any] = {
        "$schema": DIALECT,
        "$id": f"{topic}/{name}.json",
        "x-topic": topic,
        "x-message": name,
        "x-direction": direction,
    }
    if summary and "description" not in schema:
        head["description"] = summary
    return head | schema


def topic_schemas(topic: Topic) -> dict[str, dict[str, Any]]:
    """File name -> schema, for one topic."""
    files: dict[str, dict[str, Any]] = {}
    address, direction = topic.address, topic.direction
    header_models = {m.headers for m in topic.messages if m.headers is not None}
    assert len(header_models) <= 1, f"{address}: one headers model per topic"
    for message in topic.messages:
        if message.model is not None:
            files[f"{message.name}.json"] = _schema(
                address, message.name, direction, message.model, message.summary
            )
    for headers in header_models:
        files["headers.json"] = _schema(address, "headers", direction, headers)
    for reply in topic.replies:
        name = f"reply.{reply.__name__}"
        files[f"{name}.json"] = _schema(address, name, "out", reply)
    if topic.reply_headers is not None:
        files["reply.headers.json"] = _schema(address, "reply.headers", "out", topic.reply_headers)
    return files


def render() -> dict[str, str]:
    """Relative path -> file text, for every message of every topic."""
    return {
        f"{topic.address}/{name}": json.dumps(schema, indent=2, sort_keys=True) + "\n"
        for topic in catalogue()
        for name, schema in topic_schemas(topic).items()
    }


def committed(root: Path = ROOT) -> dict[str, str]:
    """The generated files committed under ``root`` (the released baseline left out)."""
    return {
        str(path.relative_to(root)): path.read_text()
        for path in sorted(root.glob("*/*.json"))
        if path.parent.name != RELEASED
    }


def write(root: Path = ROOT) -> int:
    """Replaces every topic directory under ``root`` (but the released baseline) by the rendered
    files; the number of files written."""
    root.mkdir(parents=True, exist_ok=True)
    for directory in root.iterdir():
        if directory.is_dir() and directory.name != RELEASED:
            shutil.rmtree(directory)
    files = render()
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return len(files)


def main() -> None:
    root = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT
    print(f"wrote {write(root)} schemas under {root}")


if __name__ == "__main__":
    main()
